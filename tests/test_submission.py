"""`make submission` is all or nothing, and ships the code that made the report (items 14, 15).

Each test copies the Makefile into a folder of its own (a git repository or not), with a stub
in place of Python so that `report` only touches outputs/report.pdf.
"""
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow  # starts make and git


def project(folder: Path) -> Path:
    """The Makefile, a stub `python` whose make_report.py writes outputs/report.pdf, and an
    earlier submission whose files must survive a refusal."""
    folder.mkdir(parents=True)
    shutil.copy(REPO / "Makefile", folder / "Makefile")
    stub = folder / "python-stub"
    stub.write_text("#!/bin/sh\nmkdir -p outputs && printf '%%PDF-new' > outputs/report.pdf\n")
    stub.chmod(0o755)
    (folder / "code.py").write_text("print('the code')\n")
    (folder / "submission").mkdir()
    (folder / "submission" / "code.zip").write_bytes(b"the earlier code.zip")
    (folder / "submission" / "report.pdf").write_bytes(b"the earlier report")
    return folder


def git(folder: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=folder,
                   check=True, capture_output=True)


def make_submission(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-s", "submission", f"PYTHON={folder / 'python-stub'}"],
                          cwd=folder, capture_output=True, text=True, timeout=120)


def earlier_submission_kept(folder: Path) -> bool:
    return ((folder / "submission" / "code.zip").read_bytes() == b"the earlier code.zip"
            and (folder / "submission" / "report.pdf").read_bytes() == b"the earlier report"
            and sorted(p.name for p in (folder / "submission").iterdir())
            == ["code.zip", "report.pdf"])


def test_outside_a_git_repository_nothing_is_written(tmp_path):
    """Item 14: the earlier code.zip keeps its bytes (it was truncated to 0 before)."""
    folder = project(tmp_path / "plain")
    result = subprocess.run(["git", "rev-parse", "--git-dir"], cwd=folder, capture_output=True)
    if result.returncode == 0:
        pytest.skip("the temporary folder is inside a git repository")
    made = make_submission(folder)
    errors = [line for line in made.stderr.splitlines() if line.startswith("error:")]
    assert made.returncode != 0
    assert len(errors) == 1 and "not a git repository" in errors[0], made.stderr
    assert earlier_submission_kept(folder)


def test_uncommitted_changes_are_refused_and_committed_code_is_shipped(tmp_path):
    """Item 15: a changed tracked file, or a new untracked one, is refused with one line and
    nothing written; once committed, code.zip holds exactly the commit."""
    folder = project(tmp_path / "repo")
    (folder / ".gitignore").write_text("outputs/\nsubmission/\npython-stub\n")
    git(folder, "init", "-q")
    git(folder, "add", "Makefile", "code.py", ".gitignore")
    git(folder, "commit", "-qm", "first")
    for change in ("modified", "untracked"):
        if change == "modified":
            (folder / "code.py").write_text("print('changed, not committed')\n")
        else:
            git(folder, "commit", "-qam", "commit the change")
            (folder / "helper.py").write_text("x = 1\n")
        made = make_submission(folder)
        errors = [line for line in made.stderr.splitlines() if line.startswith("error:")]
        assert made.returncode != 0, change
        assert len(errors) == 1 and "uncommitted changes" in errors[0], made.stderr
        assert ("code.py" if change == "modified" else "helper.py") in errors[0]
        assert earlier_submission_kept(folder), change
    git(folder, "add", "helper.py")
    git(folder, "commit", "-qm", "helper")
    made = make_submission(folder)
    assert made.returncode == 0, made.stderr
    with zipfile.ZipFile(folder / "submission" / "code.zip") as packed:
        assert sorted(packed.namelist()) == [".gitignore", "Makefile", "code.py", "helper.py"]
        assert packed.read("code.py") == b"print('changed, not committed')\n"
    assert (folder / "submission" / "report.pdf").read_bytes() == b"%PDF-new"
    assert sorted(p.name for p in (folder / "submission").iterdir()) == ["code.zip", "report.pdf"]
