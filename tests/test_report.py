"""make_report.py on the outputs of a real tiny study, and `make submission`'s zip."""
import json
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from conftest import REPO, run_script
from make_report import page_count

METRICS = ("task1/metrics.json", "task2/metrics.json", "task3/metrics.json", "runs/summary.json")


def all_numbers(value):
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [value]
    if isinstance(value, str):  # sentences in metrics files quote numbers too
        return [float(n) for n in re.findall(r"[-+]?\d+(?:\.\d+)?", value)]
    if isinstance(value, dict):
        return [n for v in value.values() for n in all_numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in all_numbers(v)]
    return []


@pytest.fixture
def outputs(study_outputs, tmp_path):
    """A private copy, so each test may add, remove or break files."""
    return Path(shutil.copytree(study_outputs, tmp_path / "outputs", symlinks=True))


def test_full_report_has_every_part_and_at_most_8_pages(outputs):
    result = run_script("make_report.py", "--outputs", outputs)
    assert result.returncode == 0, result.stderr
    pdf = (outputs / "report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and 1 <= page_count(pdf) <= 8
    assert f"({page_count(pdf)} pages)" in result.stdout
    report = (outputs / "report.md").read_text()
    for heading in ("## Task 1", "## Task 2", "## Task 3", "### Seeds and lambda"):
        assert heading in report
    assert "](task1/loss_curve.svg)" in report and "](runs/lambda_sweep.svg)" in report
    assert "/tmp" not in report and str(outputs) not in report  # no local paths


def test_markdown_links_work_from_another_out_folder(outputs, tmp_path):
    out = tmp_path / "elsewhere" / "report"
    result = run_script("make_report.py", "--outputs", outputs, "--out", out)
    assert result.returncode == 0, result.stderr
    links = re.findall(r"\]\(([^)]+)\)", (out / "report.md").read_text())
    assert len(links) > 10
    for link in links:
        assert (out / link).is_file(), link


def test_every_number_in_the_report_comes_from_a_metrics_file(outputs):
    assert run_script("make_report.py", "--outputs", outputs).returncode == 0
    known = [n for name in METRICS for n in all_numbers(json.loads((outputs / name).read_text()))]
    text = (outputs / "report.md").read_text()
    text = re.sub(r"\]\([^)]*\)", "]", text)  # figure paths
    text = re.sub(r"CIFAR-10|\b[A-Za-z_]+\d+\b", "", text)  # names: CIFAR-10, z1, conv1, task2
    text = re.sub(r"\b(Task|eq\.) \(?\d\)?|[Tt]op-9|\(1/3\)|\b\d+x\d+\b", "", text)
    numbers = re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", text)
    assert len(numbers) > 100
    for token in numbers:
        value = float(token)
        decimals = len(token.split(".")[1].split("e")[0]) if "." in token else 0
        assert any(abs(value - k) <= 0.5 * 10 ** -decimals * (1 + 1e-9) or
                   ("e" in token and abs(value - k) <= abs(k) * 0.06)
                   for k in known), f"{token} in report.md is in no metrics file"


def test_the_template_types_no_results():
    """Numbers in report.typ are facts of the method or citations, never results of a run."""
    template = (REPO / "report" / "report.typ").read_text()
    template = re.sub(r"//.*", "", template)
    template = re.sub(r"\.at\(\d\)|luma\(\d+\)|\d+(\.\d+)?(pt|em|cm|in|fr|%)", "", template)  # layout
    allowed = {  # facts of the data, the network and the method, and citations
        "0", "1", "2", "3", "4", "5", "6", "8", "10", "14", "16", "28", "32", "84", "120", "255",
        "400", "1024", "50,000", "10,000", "1,000", "75", "0.5", "54",  # the tutorial's "about 54 %"
        "256", "9",  # names: SHA-256, top-9
        "2014", "2009", "1947", "2015", "12", "1506.02351"}
    typed = set(re.findall(r"\d+(?:,\d{3})*(?:\.\d+)?", template)) - allowed
    assert not typed, f"numbers typed into the template: {sorted(typed)}"


def test_missing_task_gives_a_partial_report_and_a_warning(outputs):
    shutil.rmtree(outputs / "task2")
    shutil.rmtree(outputs / "task3")
    result = run_script("make_report.py", "--outputs", outputs)
    assert result.returncode == 0, result.stderr
    assert "warning: outputs of task2 are missing" in result.stderr
    report = (outputs / "report.md").read_text()
    assert "No outputs/task2/metrics.json was found; run train_deconv.py" in report
    assert "No outputs/task3/metrics.json was found; run visualize_latents.py" in report
    assert page_count((outputs / "report.pdf").read_bytes()) <= 8


def test_nothing_run_yet_still_builds(tmp_path):
    result = run_script("make_report.py", "--outputs", tmp_path / "empty")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("warning") == 3


def test_a_damaged_figure_is_one_line_error_and_no_report(outputs):
    (outputs / "task1" / "loss_curve.svg").write_text("<svg broken")
    result = run_script("make_report.py", "--outputs", outputs)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: ") and "loss_curve.svg" in result.stderr
    assert not (outputs / "report.pdf").exists()


def test_a_figure_typst_cannot_read_is_one_line_error(outputs):
    (outputs / "task1" / "loss_curve.svg").write_text('<svg width="100pt" height="50pt"><g')
    result = run_script("make_report.py", "--outputs", outputs)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: typst could not typeset the report")
    assert not (outputs / "report.pdf").exists()


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


def test_a_metrics_file_with_a_garbled_value_is_one_line_error(outputs):
    path = outputs / "task1" / "metrics.json"
    metrics = json.loads(path.read_text())
    metrics["loss_log"] = [{"epoch": 1}]  # a row without its loss
    path.write_text(json.dumps(metrics))
    result = run_script("make_report.py", "--outputs", outputs)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "lacks or garbles a value" in result.stderr and "Traceback" not in result.stderr
