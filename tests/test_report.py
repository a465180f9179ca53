"""make_report.py on synthetic outputs trees, and `make submission`'s zip."""
import json
import re
import subprocess
import zipfile

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from conftest import REPO, run_script  # noqa: E402

NAMES = ["plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def png(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(4, 2))
    ax.plot([0, 1], [1, 0])
    fig.savefig(path)
    plt.close(fig)


def channel(c):
    return {"channel": c, "activation_energy": 10.5 + c, "energy_share": 0.1 + c / 100,
            "reconstruction_energy": 200.25 + c, "mean_rgb": [0.41, 0.52, 0.63],
            "colour_share": 0.05 * c, "edge_orientation_deg": 12.5 * c,
            "orientation_coherence": 0.3 + c / 50}


def synthetic_outputs(root, tasks=("task1", "task2", "task3")):
    env = {"device": "cpu", "torch": "x"}
    config = {"lr": 0.001, "momentum": 0.9, "batch_size": 4, "epochs": 2, "seed": 0,
              "decoder_optimizer": "adam", "decoder_lr": 0.001}
    metrics = {
        "task1": {"test_accuracy": 53.11, "test_images": 10000, "config": config,
                  "per_class_accuracy": {n: 40.5 + i for i, n in enumerate(NAMES)},
                  "loss_log": [{"epoch": 1, "step": 2000, "loss": 2.2089},
                               {"epoch": 2, "step": 12000, "loss": 1.3083}],
                  "train_seconds": 28.88, "data": {"train_images": 50000}, "environment": env},
        "task2": {"test_accuracy": 52.8, "test_images": 10000, "config": config, "lambda": 0.01,
                  "per_class_accuracy": {n: 41.5 + i for i, n in enumerate(NAMES)},
                  "task1_test_accuracy": 53.11, "accuracy_change_vs_task1": -0.31,
                  "test_psnr_db": 17.94, "test_mse": 0.01608, "test_rec_loss": 66.95,
                  "train_seconds": 77.7,
                  "lambda_sweep": [{"lambda": 0.0, "test_accuracy": 53.0, "test_psnr_db": 12.1,
                                    "test_rec_loss": 250.5, "train_seconds": 70.1}]},
        "task3": {"images": {split: {"index": 7, "class": "cat",
                                     "z1": {"channels": [channel(c) for c in range(6)],
                                            "linearity": {"max_abs_gap": 9.5e-07,
                                                          "relative_gap": 0.0}},
                                     "z2": {"channels": [channel(c) for c in (3, 9, 14)],
                                            "linearity": {"max_abs_gap": 6.99,
                                                          "relative_gap": 2.055}}}
                             for split in ("train", "test")},
                  "top9": {}, "conv1_filters": []},
    }
    figures = {"task1": ["train_samples", "loss_curve", "test_predictions", "per_class_accuracy",
                         "confusion_matrix"],
               "task2": ["reconstructions", "loss_curves", "lambda_sweep"],
               "task3": ["train_z1", "train_z2", "test_z1", "test_z2", "conv1_filters",
                         "top9_z1", "top9_z2"]}
    for task in tasks:
        (root / task).mkdir(parents=True)
        (root / task / "metrics.json").write_text(json.dumps(metrics[task]))
        for name in figures[task]:
            png(root / task / f"{name}.png")
    return root


def pdf_page_count(path):
    """Pages counted from the PDF itself: the /Count of its page tree root."""
    counts = [int(n) for n in re.findall(rb"/Type\s*/Pages\b[^>]*?/Count\s+(\d+)", path.read_bytes())]
    counts += [int(n) for n in re.findall(rb"/Count\s+(\d+)[^>]*?/Type\s*/Pages\b", path.read_bytes())]
    assert counts, "no page tree found"
    return max(counts)


def all_numbers(value):
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [value]
    if isinstance(value, dict):
        return [n for v in value.values() for n in all_numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in all_numbers(v)]
    return []


def test_full_report_has_every_task_and_at_most_8_pages(tmp_path):
    outputs = synthetic_outputs(tmp_path / "outputs")
    result = run_script("make_report.py", "--outputs", outputs)
    assert result.returncode == 0, result.stderr
    report = (outputs / "report.md").read_text()
    assert "## Task 1" in report and "## Task 2" in report and "## Task 3" in report
    assert "![" in report and "](task1/loss_curve.png)" in report  # relative links
    assert 1 <= pdf_page_count(outputs / "report.pdf") <= 8
    assert "(3 pages)" not in result.stdout or pdf_page_count(outputs / "report.pdf") == 3


def test_every_number_in_the_report_comes_from_a_metrics_file(tmp_path):
    outputs = synthetic_outputs(tmp_path / "outputs")
    assert run_script("make_report.py", "--outputs", outputs).returncode == 0
    known = [n for task in ("task1", "task2", "task3")
             for n in all_numbers(json.loads((outputs / task / "metrics.json").read_text()))]
    text = (outputs / "report.md").read_text()
    text = re.sub(r"\]\([^)]*\)", "]", text)  # figure paths
    text = re.sub(r"CIFAR-10|\b[A-Za-z_]+\d+\b", "", text)  # names: CIFAR-10, z1, conv1, task2
    text = re.sub(r"\b(Task|eq\.) \(?\d\)?|[Tt]op-9|\(1/3\)|\b2x2\b|\b5x5\b|\[0, 1\]", "", text)
    numbers = re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", text)
    assert len(numbers) > 50
    for token in numbers:
        value = float(token)
        decimals = len(token.split(".")[1].split("e")[0]) if "." in token else 0
        assert any(abs(value - k) <= 0.5 * 10 ** -decimals * (1 + 1e-9) or
                   ("e" in token and abs(value - k) <= abs(k) * 0.06)
                   for k in known), f"{token} in report.md is in no metrics file"


def test_missing_task_gives_a_partial_report_and_a_warning(tmp_path):
    outputs = synthetic_outputs(tmp_path / "outputs", tasks=("task1",))
    result = run_script("make_report.py", "--outputs", outputs)
    assert result.returncode == 0, result.stderr
    assert "warning: outputs of task2 are missing" in result.stderr
    report = (outputs / "report.md").read_text()
    assert "No outputs/task2/metrics.json was found; run train_deconv.py" in report
    assert "No outputs/task3/metrics.json was found; run visualize_latents.py" in report
    assert pdf_page_count(outputs / "report.pdf") <= 8


def test_nothing_run_yet_still_builds(tmp_path):
    result = run_script("make_report.py", "--outputs", tmp_path / "empty")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("warning") == 3


@pytest.mark.skipif(subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"],
                                   capture_output=True).returncode != 0,
                    reason="not a git checkout with commits")
def test_code_zip_holds_the_code_and_no_data_or_outputs(tmp_path):
    archive = tmp_path / "code.zip"
    subprocess.run(["git", "-C", str(REPO), "archive", "--format=zip", f"--output={archive}",
                    "HEAD"], check=True)
    names = zipfile.ZipFile(archive).namelist()
    for script in ("train_classifier.py", "train_deconv.py", "visualize_latents.py",
                   "make_report.py", "models.py", "data.py", "README.md", "Makefile"):
        assert script in names
    assert not [n for n in names if n.startswith(("outputs/", "data/", "submission/"))]
    assert not [n for n in names if n.endswith((".pth", ".pt", ".jpg"))]
    makefile = (REPO / "Makefile").read_text()
    assert "git archive --format=zip --output=submission/code.zip HEAD" in makefile
