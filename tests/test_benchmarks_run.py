"""Every benchmark starts as the README says (python -m benchmarks.<name>) and prints its help:
an import that no longer resolves (after a module moved) fails here, not on the day of a
measurement."""
import subprocess
import sys

import pytest

from conftest import REPO

BENCHMARKS = sorted(p.stem for p in (REPO / "benchmarks").glob("bench_*.py"))


@pytest.mark.slow
@pytest.mark.parametrize("name", BENCHMARKS)
def test_each_benchmark_starts(name):
    result = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", "--help"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage:" in result.stdout
