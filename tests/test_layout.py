"""The package's folders show its layers (issue 33): imports point down only, read from the code itself."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "qxt_pandas"

#: Who may import whom: a module imports only modules of its own rank or lower (docs/design-notes.md).
RANKS = {
    "system": 0,
    **dict.fromkeys(["errors", "masking", "numbers", "results", "money", "masked"], 1),
    "service": 2,
    "simulator": 3,
    "options": 3,
    "stores": 4,
    "reports": 5,
    "pipeline": 6,
    **dict.fromkeys(["command", "accessor", "dask", "polars", "spark", "partitions"], 7),
    "console": 8,
    "cli": 9,
    "": 9,  # qxt_pandas/__init__.py: the public names
    "__main__": 10,
}
#: A store's insides: reached from outside ``stores/`` only through its protocol and ``stores/__init__``.
STORE_INSIDES = ("stores.journal", "stores._spill", "stores.keyed", "stores.directory", "stores.postgres")


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports() -> dict[str, set[str]]:
    """Module -> the package's modules it imports, everywhere in its code (function-level and type-only too)."""
    known, edges = modules(), defaultdict(set)
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".") if package else []
                    base = base[: len(base) - node.level + 1]
                    module = ".".join([*base, *([node.module] if node.module else [])])
                elif (node.module or "").startswith("qxt_pandas"):
                    module = (node.module or "").removeprefix("qxt_pandas").lstrip(".")
                else:
                    continue
                for alias in node.names:
                    target = f"{module}.{alias.name}".lstrip(".")
                    edges[name].add(target if target in known else module)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("qxt_pandas.") and alias.name[11:] in known:
                        edges[name].add(alias.name[11:])
        edges[name] -= {name}
    return edges


def rank(module: str) -> int:
    return RANKS[module.split(".")[0] if module else ""]


def test_no_circle_of_modules():
    edges, seen, done, circles = imports(), set(), set(), []

    def visit(module: str, path: list[str]) -> None:
        seen.add(module)
        for target in sorted(edges[module]):
            if target in path:
                circles.append([*path[path.index(target) :], target])
            elif target not in seen:
                visit(target, [*path, target])
        done.add(module)

    for module in sorted(modules()):
        if module not in seen:
            visit(module, [module])
    assert circles == []


def test_imports_point_down_the_layers():
    upward = sorted(f"{a} -> {b}" for a, targets in imports().items() for b in targets if rank(b) > rank(a))
    assert upward == []


def test_a_store_is_reached_through_its_protocol_and_the_protocol_imports_no_store():
    edges = imports()
    reached = sorted(f"{a} -> {b}" for a, targets in edges.items() if not a.startswith("stores")
                     for b in targets if b.startswith(STORE_INSIDES))  # fmt: skip
    assert reached == []
    assert not [b for b in edges["stores.protocol"] if b.startswith("stores")]


def test_folders_stay_small():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 16, top
    for folder in (p for p in PACKAGE.rglob("*") if p.is_dir() and (p / "__init__.py").exists()):
        assert len(list(folder.glob("*.py"))) <= 12, folder
