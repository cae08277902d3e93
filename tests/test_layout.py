"""The layout stays what the docs say it is: no import cycles between facesuite's modules, no
module past 420 lines without a reason at its top, and docs/architecture.md's table naming
every package and module at the top of the source tree."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "facesuite"
LONG = 420  # modules keep to about 400 lines
# A long module's docstring has a paragraph that starts "Long because" and gives the reason in
# words: at least 8 of them, 6 different, so neither a bare phrase nor filler passes.
REASON = re.compile(r"(?:^|\n\n)Long because (?P<reason>[^\n].*?)(?:\n\n|$)", re.DOTALL)
REASON_WORDS, REASON_DISTINCT_WORDS = 8, 6


def module_name(path: Path, root: Path = SRC) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str], root: Path = SRC) -> set[str]:
    """The modules of ``modules`` that ``path`` imports anywhere in it: at the top and inside
    functions alike, since an import that runs later still ties the two modules together.

    ``from package import name`` counts as importing ``package.name`` when that is a module, else
    ``package``; relative imports are resolved. A package a module sits in is not an import of it.
    """
    own = module_name(path, root)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    names = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parents = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parents, *([base] if base else [])])
            names |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names}
    return (names & modules) - {own}


def _runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` but those under ``if TYPE_CHECKING:``: those imports never run, so
    they cannot tie two modules together at run time (type hints read them, nothing else)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in _runtime_nodes_of(child))
            continue
        yield from _runtime_nodes_of(node)


def _runtime_nodes_of(node: ast.AST):
    yield node
    yield from _runtime_nodes(node)


def import_graph(root: Path) -> dict[str, list[str]]:
    """Each module under ``root`` (a package folder) -> the modules of that package it imports."""
    paths = {module_name(path, root): path for path in root.rglob("*.py")}
    return {name: sorted(imported_modules(path, set(paths), root)) for name, path in paths.items()}


def import_cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of ``graph``: each of two or more nodes is a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for child in graph.get(node, []):
            if child not in index:
                connect(child)
                low[node] = min(low[node], low[child])
            elif child in stack:
                low[node] = min(low[node], index[child])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            connect(name)
    return cycles


def test_no_import_cycles() -> None:
    """No two modules import each other, directly or round a loop, at any depth of either."""
    assert import_cycles(import_graph(SRC)) == []


def reason_for_length(docstring: str | None) -> str | None:
    """The reason a module's docstring gives for its length, or None when it gives none."""
    match = REASON.search(docstring or "")
    if match is None:
        return None
    words = re.findall(r"[a-z]{2,}(?:[-'][a-z]+)*", match["reason"].lower())
    return match["reason"] if len(words) >= REASON_WORDS and len(set(words)) >= REASON_DISTINCT_WORDS else None


def test_long_modules_say_why() -> None:
    long = [p for p in SRC.rglob("*.py") if len(p.read_text(encoding="utf-8").splitlines()) > LONG]
    unexplained = [str(p.relative_to(SRC)) for p in long if reason_for_length(ast.get_docstring(ast.parse(p.read_text(encoding="utf-8")))) is None]
    assert long and unexplained == []


def test_a_reason_is_a_sentence_of_words() -> None:
    given = "Does one thing.\n\nLong because the readers share one set of list helpers and one error rule."
    assert reason_for_length(given) == "the readers share one set of list helpers and one error rule."
    assert reason_for_length("Does one thing, a little over ~400 lines.") is None  # no reason given
    assert reason_for_length("Does one thing.\n\nLong because it is long.") is None  # too few words
    assert reason_for_length("Long because TODO TODO TODO TODO TODO TODO TODO TODO.") is None  # the same word
    assert reason_for_length("Long because 1 2 3 4 5 6 7 8 9 10 11 12 ... !!!") is None  # no words


def test_architecture_table_names_every_package_and_module() -> None:
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    table = page[page.index("## Where each stage lives"):page.index("## Decisions")]
    first_column = [row.split("|")[1] for row in table.splitlines() if row.startswith("| `")]
    named = {name for cell in first_column for name in re.findall(r"`([a-z_]+(?:\.py|/))`", cell)}
    present = {f"{p.name}/" for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    present |= {p.name for p in SRC.glob("*.py") if p.name != "__init__.py"}
    assert named == present, (sorted(present - named), sorted(named - present))


def test_the_cycle_check_sees_imports_inside_functions(tmp_path: Path) -> None:
    package = tmp_path / "toy"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from toy.sub import b\n")
    (package / "sub" / "b.py").write_text("import os\n\n\ndef later():\n    from .. import c\n    return c\n")
    (package / "c.py").write_text("class Later:\n    def method(self):\n        import toy.a\n")
    (package / "d.py").write_text("from toy import a\n")  # imports into the loop, is no part of it
    graph = import_graph(package)
    assert graph["toy.sub.b"] == ["toy.c"] and graph["toy.c"] == ["toy.a"]
    assert import_cycles(graph) == [["toy.a", "toy.c", "toy.sub.b"]]
    (package / "c.py").write_text("import os\n")
    assert import_cycles(import_graph(package)) == []
    # A type-checking-only import never runs: no cycle, however the hints go; its else branch runs.
    (package / "c.py").write_text("from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from toy import a\n")
    assert import_cycles(import_graph(package)) == []
    (package / "c.py").write_text("from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    pass\nelse:\n    from toy import a\n")
    assert import_cycles(import_graph(package)) == [["toy.a", "toy.c", "toy.sub.b"]]
