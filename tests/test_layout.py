"""The package's shape (docs/architecture.md): what each part may import, no import cycle, the
shipped models named in one place, and files small enough to read."""

import ast
from pathlib import Path

import x2i

ROOT = Path(x2i.__file__).parent
# What each part may import besides itself (function-level imports included).
MAY_IMPORT = {
    "errors": set(),
    "options": set(),
    "media": {"errors"},
    "inference": {"errors", "media"},
    "training": {"errors", "options", "media", "inference"},
    "architectures": {"errors", "inference"},
    "tiny_models": {"architectures", "inference"},
    "mini": {"errors", "options", "media", "inference", "training", "architectures"},
    "app": {"errors", "options", "media", "inference", "training", "mini", "tiny_models"},
}


def part_of(module: str) -> str:
    return module.split(".")[1] if module.count(".") else module


def modules():
    for path in sorted(ROOT.rglob("*.py")):
        name = ".".join(("x2i", *path.relative_to(ROOT).with_suffix("").parts)).removesuffix(".__init__")
        yield name, path, ast.parse(path.read_text())


def imports(tree, top_level_only=False):
    nodes = tree.body if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("x2i"):
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("x2i"))


def test_each_part_imports_only_what_it_may():
    wrong = []
    for name, _, tree in modules():
        part = part_of(name)
        if part in ("__init__", "__main__") or name == "x2i":
            continue
        for target in imports(tree):
            if part_of(target) not in MAY_IMPORT[part] | {part} and target != "x2i":
                wrong.append(f"{name} imports {target}")
    assert not wrong, wrong


def test_no_import_cycle():
    graph = {name: {t for t in imports(tree, top_level_only=True) if t != name} for name, _, tree in modules()}
    state = {}

    def visit(node, path):
        if state.get(node) == "done":
            return
        assert state.get(node) != "open", " -> ".join([*path, node])
        state[node] = "open"
        for target in graph.get(node, ()):
            visit(target, [*path, node])
        state[node] = "done"

    for node in graph:
        visit(node, [])


def test_shipped_models_are_named_in_one_place():
    """Only the registry (inference.locations) knows where the shipped weights lie."""
    naming = [name for name, path, _ in modules() if "weights" in path.read_text() and '"mini" / "weights"' in path.read_text()]
    assert naming == ["x2i.inference.locations"]


def test_files_stay_small():
    lines = {name: len(path.read_text().splitlines()) for name, path, _ in modules()}
    assert max(lines.values()) <= 400, max(lines.items(), key=lambda item: item[1])
    assert lines["x2i.app.cli"] < 250
