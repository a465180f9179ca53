"""The layout the README promises: commands at the top, shared code in study/'s sub-packages,
each importing only the sub-packages below it, no import circles, and shared code that never
imports a command."""
import ast

from conftest import REPO

COMMANDS = {"train_classifier", "train_deconv", "visualize_latents", "sweep", "make_report",
            "build_explorer", "probe_layers", "make_beyond_report", "depth",
            "compare_seeds", "invariance", "formation"}


def _imports() -> dict[str, set[str]]:
    """Module -> the repository's modules it imports (anywhere in it, functions included)."""
    modules = {}
    for path in [*REPO.glob("*.py"), *(REPO / "study").rglob("*.py")]:
        name = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
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


# study's sub-packages from the lowest up: each may import only those before it
LAYERS = ("core", "training", "analysis", "reporting", "runs")


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "study" and len(parts) > 1 else None


def test_each_sub_package_imports_only_the_ones_below_it():
    upward = []
    for module, deps in _imports().items():
        if _layer(module) is None:
            continue
        rank = LAYERS.index(_layer(module))
        upward += [(module, d) for d in deps if _layer(d) and LAYERS.index(_layer(d)) > rank]
    assert upward == []


def test_the_two_card_modules_import_only_the_lowest_sub_package():
    graph = _imports()
    for card in ("models", "data"):
        assert {d for d in graph[card] if d.startswith("study.")} <= {
            d for d in graph[card] if _layer(d) == "core" or d == "study"}, card
        assert any(_layer(d) == "core" for d in graph[card]), card  # the test reads the imports


def test_the_layer_order_is_the_one_the_package_docstring_gives():
    import study
    listed = [line.split("`")[1] for line in study.__doc__.splitlines() if line.startswith("- `")]
    assert tuple(listed) == LAYERS
    assert sorted(p.name for p in (REPO / "study").iterdir() if p.is_dir()
                  and p.name != "__pycache__") == sorted(LAYERS)


def test_every_shared_module_says_what_it_is_for():
    for path in (REPO / "study").rglob("*.py"):
        assert ast.get_docstring(ast.parse(path.read_text())), path


def test_the_layout_page_names_every_file_a_reader_would_look_for():
    """docs/layout.md is the one-sentence map; a module added without a line there fails here."""
    page = (REPO / "docs" / "layout.md").read_text()
    names = [p.name for p in (REPO / "study").rglob("*.py") if p.name != "__init__.py"]
    names += [p.name for p in REPO.glob("*.py")]
    assert [n for n in names if n not in page] == []
