"""The layout the README promises: commands at the top, shared code in study/, no import
circles, and shared code that never imports a command."""
import ast
from pathlib import Path

from conftest import REPO

COMMANDS = {"train_classifier", "train_deconv", "visualize_latents", "sweep", "make_report",
            "build_explorer", "probe_layers", "make_depth_report"}


def _imports() -> dict[str, set[str]]:
    """Module -> the repository's modules it imports (anywhere in it, functions included)."""
    modules = {}
    for path in [*REPO.glob("*.py"), *(REPO / "study").glob("*.py")]:
        name = ("study." if path.parent.name == "study" else "") + path.stem
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found |= ({f"study.{a.name}" for a in node.names} if node.module == "study"
                          else {node.module})
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        modules[name] = found
    return {m: {d for d in deps if d in modules and d != m} for m, deps in modules.items()}


def test_the_top_level_holds_the_commands_and_the_two_card_modules():
    top = {path.stem for path in REPO.glob("*.py")}
    assert top == COMMANDS | {"models", "data"}


def test_shared_code_never_imports_a_command():
    graph = _imports()
    assert {m: deps & COMMANDS for m, deps in graph.items()
            if m not in COMMANDS and deps & COMMANDS} == {}


def test_there_is_no_import_circle():
    graph, circles = _imports(), []

    def walk(module: str, path: list[str]) -> None:
        for dep in graph[module]:
            if dep in path:
                circles.append(path[path.index(dep):] + [dep])
            else:
                walk(dep, path + [dep])
    for module in graph:
        walk(module, [module])
    assert circles == []


def test_every_shared_module_says_what_it_is_for():
    for path in (REPO / "study").glob("*.py"):
        if path.name != "__init__.py":
            assert ast.get_docstring(ast.parse(path.read_text())), path.name


def test_the_layout_page_names_every_file_a_reader_would_look_for():
    """docs/layout.md is the one-sentence map; a module added without a line there fails here."""
    page = (REPO / "docs" / "layout.md").read_text()
    names = [p.name for p in (REPO / "study").glob("*.py") if p.name != "__init__.py"]
    names += [p.name for p in REPO.glob("*.py")]
    assert [n for n in names if n not in page] == []
