"""The short table of headline results a long command ends with, before where its report is."""

from __future__ import annotations

from collections.abc import Sequence


def print_summary(title: str, rows: Sequence[tuple[str, object]]) -> None:
    """``rows`` of ``(what, value)`` as a two-column table on stdout (rich; plain text when piped)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    cells = [(what, f"{value:.3f}" if isinstance(value, float) else str(value)) for what, value in rows]
    table = Table(title=title, box=box.SIMPLE, show_header=False, title_justify="left")
    table.add_column("what")
    table.add_column("value", justify="right")
    for what, value in cells:
        table.add_row(what, value)
    console = Console(soft_wrap=True)
    if not console.is_terminal:
        # Piped or redirected, the width is a guess (80): give every row its own line unwrapped.
        widest = max((len(what) + len(value) for what, value in cells), default=0) + 8
        console = Console(soft_wrap=True, width=max(80, widest))
    console.print(table)


def counted(count: int, one: str, many: str) -> str:
    """``count`` with the word for that many: ``1 photo``, ``0 photos``."""
    return f"{count} {one if count == 1 else many}"
