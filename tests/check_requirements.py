"""Exit 0 when every requirement of the given requirements files is installed at a version it
allows, else 1 naming the first that is not: `make install` runs pip only then.

    python tests/check_requirements.py requirements.txt [more.txt ...]
"""
import sys
from importlib import metadata

try:
    from packaging.requirements import InvalidRequirement, Requirement
except ImportError:  # a fresh interpreter: pip installs everything
    print("needs packaging: installing the requirements", file=sys.stderr)
    sys.exit(1)


def unmet(path: str) -> str | None:
    """The first requirement of `path` that is missing or at a version it excludes, or None."""
    for line in open(path, encoding="utf-8"):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            return text
        try:
            version = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            return f"{requirement.name} (not installed)"
        if requirement.specifier and not requirement.specifier.contains(version, prereleases=True):
            return f"{requirement} (installed: {version})"
    return None


if __name__ == "__main__":
    for path in sys.argv[1:]:
        missing = unmet(path)
        if missing:
            print(f"needs {missing}: installing {path}", file=sys.stderr)
            sys.exit(1)
