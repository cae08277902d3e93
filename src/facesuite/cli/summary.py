"""The short table of headline results a long command ends with, before where its report is."""

from __future__ import annotations

from collections.abc import Sequence


def print_summary(title: str, rows: Sequence[tuple[str, object]]) -> None:
    """``rows`` of ``(what, value)`` as a two-column table on stdout (rich; plain text when piped)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE, show_header=False, title_justify="left")
    table.add_column("what")
    table.add_column("value", justify="right")
    for what, value in rows:
        table.add_row(what, f"{value:.3f}" if isinstance(value, float) else str(value))
    Console(soft_wrap=True).print(table)


def counted(count: int, one: str, many: str) -> str:
    """``count`` with the word for that many: ``1 photo``, ``0 photos``."""
    return f"{count} {one if count == 1 else many}"
