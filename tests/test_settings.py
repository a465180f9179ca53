"""One home for every shared value: change the default λ in study/core/settings.py alone, and the
Task 2 script, the sweep's plan, its summary and the λ table follow."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

CHANGED = 3e-3  # a value no other setting uses


def _copy_with_default_lambda(destination: Path, value: float) -> Path:
    """The repository's Python files, with DEFAULT_LAMBDA set to `value` in settings.py only."""
    for path in [*REPO.glob("*.py"), *(REPO / "study").rglob("*.py")]:
        target = destination / path.relative_to(REPO)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    settings = destination / "study" / "core" / "settings.py"
    text = settings.read_text()
    assert text.count("DEFAULT_LAMBDA = 1e-2") == 1
    settings.write_text(text.replace("DEFAULT_LAMBDA = 1e-2", f"DEFAULT_LAMBDA = {value!r}"))
    return destination


PROBE = r'''
import json, sys
from pathlib import Path
import sweep, train_deconv
from study.runs.summary import summarize

out = Path(sys.argv[1])
args = sweep.parse_args([])
runs = sweep.plan(args.seeds, args.lambdas, out, [])
# each Task 2 run's metrics, written by hand: accuracy 50 + seed, PSNR 10 * (1 + lambda)
codes = {}
for run in runs:
    codes[run.name] = 0
    if run.task in ("task1", "task2"):
        run.out.mkdir(parents=True, exist_ok=True)
        lam = run.lam if run.task == "task2" else None
        metrics = {"test_accuracy": 50.0 + run.seed, "test_psnr_db": 10 * (1 + (lam or 0)),
                   "train_seconds": 1.0, "config": {"seed": run.seed, "lambda": lam},
                   "lambda": lam, "psnr_baselines_db": {}, "test_predictions": "0123",
                   "test_labels": "0123"}
        (run.out / "metrics.json").write_text(json.dumps(metrics))
summary = summarize(runs, codes, args.seeds, args.lambdas)
print(json.dumps({
    "parser_default": train_deconv.build_parser().parse_args([]).lam,
    "sweep_lambdas": args.lambdas,
    "task2_runs": sorted([r.seed, r.lam] for r in runs if r.task == "task2" and not r.permuted),
    "seed_run_flags": [r.command[r.command.index("--lambda") + 1] for r in runs
                       if r.task == "task2" and r.seed != args.seeds[0]],
    "lambda_table": [[row["lambda"], row["seeds"]] for row in summary["lambda_sweep"]],
    "per_seed": len(summary["per_seed"]),
}))
'''


@pytest.mark.slow
@pytest.mark.parametrize("value", [1e-2, CHANGED])
def test_the_default_lambda_is_set_in_one_place(tmp_path, value):
    repo = _copy_with_default_lambda(tmp_path / "repo", value)
    result = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / "out")], cwd=repo,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    lambdas = sorted({0.0, 1e-4, 1e-3, 1e-1, value})
    assert seen["parser_default"] == value  # train_deconv.py --lambda's default
    assert seen["sweep_lambdas"] == lambdas  # no duplicate, the default among them
    # every seed at the default, each other lambda once at the first seed, nothing else
    expected = sorted([[s, value] for s in (0, 1, 2)] + [[0, lam] for lam in lambdas if lam != value])
    assert seen["task2_runs"] == expected
    assert seen["seed_run_flags"] == [repr(value)] * 2 or seen["seed_run_flags"] == [str(value)] * 2
    # the lambda table: the default row holds the three seeds, the others seed 0 alone
    assert seen["lambda_table"] == [[lam, [0, 1, 2] if lam == value else [0]] for lam in lambdas]
    assert seen["per_seed"] == 3
