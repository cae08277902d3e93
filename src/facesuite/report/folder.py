"""`facesuite report DIR`: one self-contained page for any evaluation output folder (or a folder of them)."""

from __future__ import annotations

import json
from pathlib import Path

from facesuite.errors import InputError
from facesuite.report.html import figure_html, read_sections, table_html, write_html


def _flatten(metrics: dict, prefix: str = "") -> list[tuple[str, object]]:
    rows: list[tuple[str, object]] = []
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += _flatten(value, name + ".")
        elif isinstance(value, list):
            rows.append((name, json.dumps(value)))
        else:
            rows.append((name, value))
    return rows


def folder_sections(folder: Path, heading: str | None = None) -> list[tuple[str, str]]:
    """Report sections for ``folder`` and each sub-folder that holds a ``metrics.json``."""
    path = folder / "metrics.json"
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("no metrics.json here (not an evaluation output folder)", folder) from None
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(f"unreadable metrics.json ({error})", path) from None
    if not isinstance(metrics, dict):
        raise InputError("metrics.json does not hold an object", path)
    title = heading or folder.name
    figures = "".join(figure_html(png.stem.replace("_", " "), png) for png in sorted(folder.glob("*.png")))
    sections = [(f"{title}: figures", figures)] if figures else []
    # The faces the evaluation's own page shows (strips, errors), lifted as they are.
    if (folder / "report.html").is_file():
        sections += [(f"{title}: {name}", body) for name, body in read_sections(folder / "report.html") if 'class="faces"' in body]
    sections.append((f"{title}: metrics", table_html(["metric", "value"], _flatten(metrics))))
    for child in sorted(p for p in folder.iterdir() if p.is_dir() and (p / "metrics.json").is_file()):
        sections += folder_sections(child, f"{title}/{child.name}")
    return sections


def write_folder_report(folder: Path, out: Path | None = None) -> Path:
    """One HTML page (images embedded) for an evaluation output folder; default ``folder/summary.html``.

    ``summary.html`` rather than ``report.html``: the evaluation's own report must not be overwritten.
    """
    if not folder.is_dir():
        raise InputError("no such folder", folder)
    if (folder / "metrics.json").is_file():
        sections = folder_sections(folder)
    else:  # a folder of evaluations, such as the demo's output
        children = sorted(p for p in folder.iterdir() if p.is_dir() and (p / "metrics.json").is_file())
        if not children:
            raise InputError("no metrics.json here or in its sub-folders (not an evaluation output folder)", folder)
        sections = [s for child in children for s in folder_sections(child)]
    return write_html(out or folder / "summary.html", f"Evaluation report: {folder}", sections)
