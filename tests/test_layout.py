"""The layout stays what the docs say it is: no import cycles between facesuite's modules, no
module past ~400 lines without a reason at its top, and docs/architecture.md's table naming
every package and module at the top of the source tree."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "facesuite"
LONG = 420  # "~400 lines"
REASON = re.compile(r"~400 lines")  # the docstring says why the module is longer


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def top_level_imports(path: Path) -> set[str]:
    """facesuite modules imported when ``path`` is imported (imports inside functions run later)."""
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in names if name.startswith("facesuite")}


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
    """No two modules import each other, directly or round a loop, when they are imported."""
    modules = {module_name(p): p for p in SRC.rglob("*.py")}
    graph = {name: sorted(m for m in top_level_imports(path) if m in modules and m != name) for name, path in modules.items()}
    assert import_cycles(graph) == []


def test_long_modules_say_why() -> None:
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py") if (n := len(p.read_text(encoding="utf-8").splitlines())) > LONG}
    unexplained = {name: n for name, n in long.items() if not REASON.search(ast.get_docstring(ast.parse((SRC / name).read_text())) or "")}
    assert unexplained == {}


def test_architecture_table_names_every_package_and_module() -> None:
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    table = page[page.index("## Where each stage lives"):page.index("## Decisions")]
    first_column = [row.split("|")[1] for row in table.splitlines() if row.startswith("| `")]
    named = {name for cell in first_column for name in re.findall(r"`([a-z_]+(?:\.py|/))`", cell)}
    present = {f"{p.name}/" for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    present |= {p.name for p in SRC.glob("*.py") if p.name != "__init__.py"}
    assert named == present, (sorted(present - named), sorted(named - present))


def test_the_cycle_check_can_fail(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("from facesuite.b import x\n")
    (tmp_path / "b.py").write_text("import facesuite.c\n")
    (tmp_path / "c.py").write_text("import facesuite.a\n")
    graph = {f"facesuite.{n}": sorted(m for m in top_level_imports(tmp_path / f"{n}.py") if m.count(".") == 1) for n in "abc"}
    assert import_cycles(graph) == [["facesuite.a", "facesuite.b", "facesuite.c"]]
    assert import_cycles({"x": ["y"], "y": []}) == []
