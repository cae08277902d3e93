"""Self-contained HTML reports: every image embedded, no external assets (works offline).

A page is a list of sections, each written as ``<section data-heading=...>``; :func:`read_sections`
reads them back, so a page that gathers others (the demo's, ``facesuite report``) lifts their
pictures as they are instead of computing them again.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from facesuite.text import open_output

Section = tuple[str, str]  # (heading, html body)

STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1180px;color:#222;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}h3{font-size:1rem;margin:.8rem 0 .3rem}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.25rem .6rem;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
figure{display:inline-block;margin:.4rem;vertical-align:top}figure img{max-width:520px;border:1px solid #ddd}
figure.plot img{max-width:272px}
figcaption{font-size:.8rem;color:#555;max-width:272px}.thumbs img{width:112px;height:112px}
.faces{display:flex;flex-wrap:wrap;gap:.3rem}.faces figure{margin:0;background:#fafafa;border:1px solid #ddd;padding:.25rem;border-radius:4px}
.faces figure img{width:80px;height:80px;border:0;max-width:none}.faces figcaption{max-width:168px;line-height:1.25}
.faces figure.wrong{background:#fdecec;border-color:#e2a4a4}.faces figure.right{background:#ecf7ee;border-color:#a6d3b0}
.hero{display:flex;gap:1.2rem;align-items:flex-start}.hero .faces{max-width:560px}.headline{font-size:.85rem}.headline td{padding:.12rem .5rem}.headline td:last-child{font-weight:600;white-space:nowrap}.muted{color:#666;font-size:.85rem}
"""


def image_data_uri(path: str | Path) -> str:
    data = Path(path).read_bytes()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def thumbnail_uri(image: np.ndarray, size: int = 80, quality: int = 82) -> str:
    """A small JPEG of an RGB array as a data URI: a face in a report costs about 3 KB."""
    from PIL import Image

    picture = Image.fromarray(np.asarray(image, dtype=np.uint8))
    picture.thumbnail((size, size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def table_html(header: Sequence[str], rows: Sequence[Sequence[object]], css_class: str = "") -> str:
    def cell(value: object) -> str:
        return f"{value:.4f}" if isinstance(value, float) else html.escape(str(value))

    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    css = f' class="{css_class}"' if css_class else ""
    return f"<table{css}><tr>{head}</tr>{body}</table>"


def figure_html(caption: str, path: str | Path) -> str:
    return f'<figure class="plot"><img src="{image_data_uri(path)}" alt="{html.escape(caption)}"><figcaption>{html.escape(caption)}</figcaption></figure>'


def write_html(out: str | Path, title: str, sections: Sequence[Section]) -> Path:
    """Write ``out`` as one HTML page; ``sections`` are ``(heading, html body)`` pairs (a body
    never holds a section of its own: :func:`read_sections` relies on it)."""
    body = "".join(
        f'<section data-heading="{html.escape(heading)}"><h2>{html.escape(heading)}</h2>{content}</section>'
        for heading, content in sections)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{STYLE}</style>"
            f"</head><body><h1>{html.escape(title)}</h1>{body}</body></html>")
    with open_output(out) as handle:
        handle.write(page)
    return Path(out)


_SECTION = re.compile(r'<section data-heading="([^"]*)"><h2>.*?</h2>(.*?)</section>', re.DOTALL)


def read_sections(page: str | Path) -> list[Section]:
    """The ``(heading, html body)`` sections of a page :func:`write_html` wrote."""
    text = Path(page).read_text(encoding="utf-8")
    return [(html.unescape(heading), body) for heading, body in _SECTION.findall(text)]


def write_json(out: str | Path, data: dict) -> Path:
    with open_output(out) as handle:
        handle.write(json.dumps(data, indent=2))
    return Path(out)
