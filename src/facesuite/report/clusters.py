"""The picture of a clustering: one row of face thumbnails per cluster, largest first, then the
faces left unclustered grouped by reason. Each face card names its file (``data-path``), face
index (``data-face``) and cluster (``data-cluster``), so a reader can trace it to clusters.csv."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path

from facesuite.report.html import Section, table_html, write_html

#: Faces shown per cluster row; the rest are counted.
ROW_LENGTH = 24
# Strips of small cards: the caption (file name, distance) is cut to the thumbnail's width.
STRIP_STYLE = ("<style>.cluster .faces figure,.unclustered .faces figure{width:80px}"
               ".cluster figcaption,.unclustered figcaption{font-size:.68rem;overflow:hidden;text-overflow:ellipsis;"
               "white-space:nowrap}.cluster h3,.unclustered h3{margin:.7rem 0 .25rem}</style>")


def _card(clusters, row: int, caption: str, verdict: str = "") -> str:
    face = clusters.faces[row]
    uri = "data:image/jpeg;base64," + base64.b64encode(clusters.thumbnails[row]).decode("ascii")
    name = html.escape(f"{Path(face.path).name} face {face.index}")
    cluster = "" if face.cluster is None else f' data-cluster="{face.cluster}"'
    return (f'<figure class="face {verdict}" data-path="{html.escape(face.path)}" data-face="{face.index}"{cluster}>'
            f'<img src="{uri}" alt="{name}" title="{name}"><figcaption>{html.escape(caption)}</figcaption></figure>')


def cluster_rows_html(clusters, truth: Mapping[int, str] | None = None, limit: int | None = None) -> str:
    """One strip per cluster of two or more faces, largest first (at most ``limit`` clusters),
    then the faces seen once, in one strip. ``truth``: each face's person by row, when known: a
    face not of its cluster's most common person is marked wrong."""
    parts, alone = [], []
    for cluster in clusters.ids()[:limit]:
        members = clusters.members(cluster)
        if len(members) == 1:
            alone.append(members[0])
            continue
        majority = None
        if truth is not None:
            people = [truth[row] for row in members if row in truth]
            majority = max(set(people), key=people.count) if people else None
        cards = []
        for row in members[:ROW_LENGTH]:
            face = clusters.faces[row]
            verdict = "" if majority is None or row not in truth else "right" if truth[row] == majority else "wrong"
            cards.append(_card(clusters, row, f"d {face.distance:.3f} · {Path(face.path).name}", verdict))
        more = f'<p class="muted">and {len(members) - ROW_LENGTH} more</p>' if len(members) > ROW_LENGTH else ""
        name = clusters.names.get(cluster)
        title = (f"cluster {cluster}" + (f" · {name}" if name else "") + f" · {len(members)} faces in "
                 f"{len(clusters.photos(cluster))} photos" + (f" · mostly {majority}" if majority else ""))
        parts.append(f'<div class="cluster" data-cluster="{cluster}"><h3>{html.escape(title)}</h3>'
                     f'<div class="faces">{"".join(cards)}</div>{more}</div>')
    if alone:
        cards = [_card(clusters, row, f"{clusters.faces[row].cluster}"
                       + (f" · {clusters.names[clusters.faces[row].cluster]}" if clusters.faces[row].cluster in clusters.names else "")
                       + f" · {Path(clusters.faces[row].path).name}") for row in alone]
        parts.append(f'<div class="cluster" data-alone="{len(alone)}"><h3>seen once: {len(alone)} clusters of one face '
                     f'(caption: cluster id)</h3><div class="faces">{"".join(cards)}</div></div>')
    return STRIP_STYLE + "".join(parts)


def unclustered_html(clusters) -> str:
    """The faces left out, one strip per reason (below-floor faces share one)."""
    by_reason: dict[str, list[int]] = {}
    for row in clusters.unclustered():
        by_reason.setdefault(clusters.faces[row].reason.split(" (")[0], []).append(row)
    parts = []
    for reason, rows in sorted(by_reason.items()):
        cards = [_card(clusters, row, f"{Path(clusters.faces[row].path).name} · "
                                      + (f"quality {clusters.faces[row].quality:.3f}" if clusters.faces[row].quality is not None else reason))
                 for row in rows[:ROW_LENGTH]]
        more = f'<p class="muted">and {len(rows) - ROW_LENGTH} more</p>' if len(rows) > ROW_LENGTH else ""
        parts.append(f'<div class="unclustered" data-reason="{html.escape(reason)}"><h3>{html.escape(reason)}: '
                     f'{len(rows)} faces</h3><div class="faces">{"".join(cards)}</div>{more}</div>')
    return STRIP_STYLE + "".join(parts) if parts else '<p class="muted">none</p>'


def summary_table(clusters) -> str:
    faces, left = len(clusters.faces), len(clusters.unclustered())
    rows: Sequence[tuple[str, object]] = [
        ("photos", len({face.path for face in clusters.faces})), ("faces", faces), ("clusters", len(clusters.ids())),
        ("clusters of two or more faces", sum(clusters.size(c) > 1 for c in clusters.ids())),
        ("faces left unclustered", left), ("files skipped", len(clusters.skipped)),
        ("edge threshold (cosine distance)", clusters.threshold), ("embedder", clusters.embedder)]
    return table_html(["", "value"], rows)


def write_clusters_report(clusters, out: Path, title: str) -> Path:
    sections: list[Section] = [("Clusters, largest first", cluster_rows_html(clusters) if clusters.ids() else '<p class="muted">none</p>'),
                               ("Unclustered faces", unclustered_html(clusters)), ("Summary", summary_table(clusters))]
    if clusters.skipped:
        sections.append(("Files skipped", table_html(["file", "reason"], [(str(s.path), s.error.message) for s in clusters.skipped])))
    return write_html(out, title, sections)
