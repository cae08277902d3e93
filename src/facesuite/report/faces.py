"""Faces in reports: strips of probe and gallery chips per distortion type, the worst errors of a
recognition run, and grids of chips (gender errors with their Grad-CAM, distortion examples).

Every face card names the files it shows (``data-probe`` / ``data-gallery``; ``data-first`` /
``data-second`` for pairs) and its row (``data-row``), so a reader (and the report's test) can
trace each picture to its row of ``predictions.csv``.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facesuite.report.html import thumbnail_uri

#: Paths -> aligned face chips (RGB arrays) by ``str(path)``; unreadable paths are left out.
ChipSource = Callable[[Sequence[str]], Mapping[str, np.ndarray]]
STRIP_LENGTH = 6
WORST_ERRORS = 6


def chips_of(analysis) -> ChipSource:
    """A :data:`ChipSource` cutting chips with ``analysis`` (a :class:`~facesuite.analysis.FaceAnalysis`)
    as its pass reads them (a vetoed box shown as the centre box that replaced it): detections come
    from its cache when the evaluation just ran, so this costs one recognition pass a face."""
    def chips(paths: Sequence[str]) -> dict[str, np.ndarray]:
        crops, _ = analysis.judged_crops(list(dict.fromkeys(paths)))
        return {str(crop.path): crop.chip for crop in crops}

    return chips


@dataclass
class Card:
    """One face card: its images as ``(role, path)`` (role ``probe``, ``gallery``, ``cam``...),
    caption lines, and ``right`` / ``wrong`` / empty for its colour."""

    images: list[tuple[str, str]]
    caption: list[str]
    verdict: str = ""
    row: int | None = None  # its row in predictions.csv (0 = first data row)


def cards_html(cards: Sequence[Card], chips: Mapping[str, np.ndarray], extra: Mapping[str, np.ndarray] | None = None) -> str:
    """``cards`` as a wrapping row of figures; images are looked up in ``chips`` by path (and in
    ``extra`` by ``role:path``, for pictures that are not plain chips, like Grad-CAM overlays)."""
    extra = extra or {}
    parts = []
    for card in cards:
        attrs = "".join(f' data-{role}="{html.escape(path)}"' for role, path in card.images)
        if card.row is not None:
            attrs += f' data-row="{card.row}"'
        images = []
        for role, path in card.images:
            picture = extra.get(f"{role}:{path}", chips.get(path))
            name = html.escape(f"{role}: {Path(path).name}")
            images.append(f'<img class="{role}" src="{thumbnail_uri(picture)}" alt="{name}" title="{name}">'
                          if picture is not None else f'<span class="muted">{name} unreadable</span>')
        caption = "<br>".join(html.escape(line) for line in card.caption)
        parts.append(f'<figure class="face {card.verdict}"{attrs}>{"".join(images)}<figcaption>{caption}</figcaption></figure>')
    return f'<div class="faces">{"".join(parts)}</div>'


def _spread(items: Sequence, count: int) -> list:
    """``count`` evenly spaced items (all when fewer): a fixed, representative pick."""
    if len(items) <= count:
        return list(items)
    return [items[int(i)] for i in np.linspace(0, len(items) - 1, count)]


def _match_caption(row: Mapping[str, str]) -> list[str]:
    right = row["predicted_identity"] == row["true_identity"]
    lines = [f"{'right' if right else 'wrong'} · distance {float(row['distance']):.3f}",
             f"route {row.get('route') or 'plain'}", f"decision {row.get('decision') or '-'}"]
    if row.get("match_kind"):
        lines.append(f"match {row['match_kind']}")
    if not right:
        lines.append(f"nearest {row['predicted_identity']}")
    return lines


def _strips(rows: Sequence[Mapping[str, str]], per_type: int) -> list[tuple[str, str, list[Card]]]:
    """Per distortion type (``rows`` are ``predictions.csv``'s): its name, a title and ``per_type``
    cards, errors first (a third of the strip, more when too few answers are right), then right
    answers spread from the closest to the farthest, shown in order of distance."""
    by_type: dict[str, list[int]] = {}
    for index, row in enumerate(rows):
        by_type.setdefault(row.get("distortion") or "all", []).append(index)
    strips = []
    for kind in sorted(by_type):
        ordered = sorted(by_type[kind], key=lambda i: float(rows[i]["distance"]))
        wrong = [i for i in ordered if rows[i]["predicted_identity"] != rows[i]["true_identity"]]
        right = [i for i in ordered if rows[i]["predicted_identity"] == rows[i]["true_identity"]]
        picked = _spread(wrong, min(len(wrong), max(per_type // 3, per_type - len(right))))
        picked += _spread(right, per_type - len(picked))
        cards = [Card([("probe", rows[i]["path"]), ("gallery", rows[i]["gallery_path"])], _match_caption(rows[i]),
                      "right" if i in right else "wrong", i)
                 for i in sorted(picked, key=lambda i: float(rows[i]["distance"]))]
        strips.append((kind, f"{kind}: top-1 {len(right) / len(ordered):.3f} over {len(ordered)} probes", cards))
    return strips


def recognition_strips(rows: Sequence[Mapping[str, str]], chips: ChipSource, per_type: int = STRIP_LENGTH) -> str:
    """One strip per distortion type: probe chip, nearest gallery chip, distance, right or wrong,
    route and decision (and ``match_kind`` when predictions.csv has it)."""
    strips = _strips(rows, per_type)
    pictures = chips([path for _, _, cards in strips for card in cards for _, path in card.images])
    return "".join(f'<div class="strip" data-type="{html.escape(kind)}"><h3>{html.escape(title)}</h3>'
                   f"{cards_html(cards, pictures)}</div>" for kind, title, cards in strips)


def one_per_type(rows: Sequence[Mapping[str, str]], chips: ChipSource) -> str:
    """One face card per distortion type in a single row (a report's first screen): the probe of
    median distance, so each card is a typical case of its type, right or wrong."""
    by_type: dict[str, list[int]] = {}
    for index, row in enumerate(rows):
        by_type.setdefault(row.get("distortion") or "all", []).append(index)
    cards = []
    for kind in sorted(by_type):
        ordered = sorted(by_type[kind], key=lambda i: float(rows[i]["distance"]))
        i = ordered[len(ordered) // 2]
        right = rows[i]["predicted_identity"] == rows[i]["true_identity"]
        cards.append(Card([("probe", rows[i]["path"]), ("gallery", rows[i]["gallery_path"])],
                          [kind, _match_caption(rows[i])[0]], "right" if right else "wrong", i))
    return cards_html(cards, chips([path for card in cards for _, path in card.images]))


def _varied(rows: Sequence[Mapping[str, str]], ranked: list[int], count: int, per_type: int = 2) -> list[int]:
    """The first ``count`` of ``ranked``, at most ``per_type`` of a distortion type while others
    remain: one type's many errors (sunny's) must not hide every other type's worst."""
    taken: dict[str, int] = {}
    first = []
    for i in ranked:
        kind = rows[i].get("distortion", "")
        if taken.get(kind, 0) < per_type:
            taken[kind] = taken.get(kind, 0) + 1
            first.append(i)
    rest = [i for i in ranked if i not in set(first)]
    return sorted((first + rest)[:count], key=ranked.index)


def worst_errors(rows: Sequence[Mapping[str, str]], chips: ChipSource, count: int = WORST_ERRORS) -> str:
    """The errors of the final decisions (source matches included), worst first: probes answered
    with someone else's name (probe beside the wrong gallery face); probes whose nearest face is
    someone else's but that the decision held back (not errors: what the thresholds caught); and
    probes not named as themselves, by the widest margin (probe beside its own nearest face)."""
    from facesuite.classify.presence import NO_FACE
    from facesuite.classify.quality import UNRECOGNISABLE
    from facesuite.decide import UNKNOWN

    def named_wrongly(row: Mapping[str, str]) -> bool:
        return row.get("decision") not in (None, "", UNKNOWN, UNRECOGNISABLE, NO_FACE, row["true_identity"])

    by_distance = sorted((i for i, r in enumerate(rows) if r["predicted_identity"] != r["true_identity"]),
                         key=lambda i: float(rows[i]["distance"]))
    wrong = _varied(rows, [i for i in by_distance if named_wrongly(rows[i])], count)
    held_back = _varied(rows, [i for i in by_distance if not named_wrongly(rows[i])], count)
    missed = _varied(rows, sorted((i for i, r in enumerate(rows) if r.get("mate_path") and r.get("decision") != r["true_identity"]),
                                  key=lambda i: -float(rows[i]["mate_distance"])), count)

    def nearest_card(i: int, kind: str) -> Card:
        return Card([("probe", rows[i]["path"]), ("gallery", rows[i]["gallery_path"])],
                    [f"{rows[i]['distortion']}: {rows[i]['true_identity']}", f"nearest {rows[i]['predicted_identity']}",
                     f"distance {float(rows[i]['distance']):.3f}", f"decision {rows[i].get('decision') or '-'}"], kind, i)

    wrong_cards = [nearest_card(i, "wrong") for i in wrong]
    held_cards = [nearest_card(i, "held") for i in held_back]
    missed_cards = [Card([("probe", rows[i]["path"]), ("gallery", rows[i]["mate_path"])],
                         [f"{rows[i]['distortion']}: {rows[i]['true_identity']}", f"own face at {float(rows[i]['mate_distance']):.3f}",
                          f"decision {rows[i].get('decision') or '-'}"], "wrong", i)
                    for i in missed]
    pictures = chips([path for card in wrong_cards + held_cards + missed_cards for _, path in card.images])
    parts = [f'<h3>Answered with a wrong name ({len(wrong_cards)} closest)</h3>'
             + (cards_html(wrong_cards, pictures) if wrong_cards else '<p class="muted">none: no probe was given someone else\'s name</p>'),
             f'<h3>Nearest face is someone else\'s, held back by the decision ({len(held_cards)} closest)</h3>'
             + (cards_html(held_cards, pictures) if held_cards else '<p class="muted">none: every nearest face is the right person</p>'),
             f'<h3>Not named as themselves ({len(missed_cards)} farthest from their own faces)</h3>'
             + (cards_html(missed_cards, pictures) if missed_cards else '<p class="muted">none: every probe was named right</p>')]
    return f'<div class="errors">{"".join(parts)}</div>'


def file_images(paths: Sequence[str]) -> dict[str, np.ndarray]:
    """A :data:`ChipSource` showing whole files (the frames a distortion detector sees)."""
    from facesuite.errors import InputError
    from facesuite.io import load_image

    images = {}
    for path in dict.fromkeys(paths):
        try:
            images[path] = load_image(path)
        except InputError:
            continue
    return images


def classification_examples(rows: Sequence[tuple[str, str, str, float]], images: ChipSource = file_images,
                            per_class: int = STRIP_LENGTH, pairs: int = 4) -> list[tuple[str, str]]:
    """Sections of examples for a classifier's ``(path, true, predicted, probability)`` rows:
    frames per predicted class (spread from the least to the most confident), and the most
    frequent confused pairs with a few of their frames."""
    by_prediction: dict[str, list[int]] = {}
    confused: dict[tuple[str, str], list[int]] = {}
    for index, (_, true, predicted, _) in enumerate(rows):
        by_prediction.setdefault(predicted, []).append(index)
        if true != predicted:
            confused.setdefault((true, predicted), []).append(index)

    def card(index: int) -> Card:
        path, true, predicted, probability = rows[index]
        return Card([("probe", path)], [f"said {predicted} ({probability:.2f})", f"true {true}"],
                    "right" if true == predicted else "wrong", index)

    strips = [(f"predicted {label} ({len(indices)} frames)",
               [card(i) for i in _spread(sorted(indices, key=lambda i: rows[i][3]), per_class)])
              for label, indices in sorted(by_prediction.items())]
    worst = sorted(confused.items(), key=lambda item: -len(item[1]))[:pairs]
    pair_strips = [(f"true {true}, predicted {predicted}: {len(indices)} frames", [card(i) for i in _spread(indices, pairs)])
                   for (true, predicted), indices in worst]
    pictures = images([path for _, cards in strips + pair_strips for card in cards for _, path in card.images])

    def render(groups: list[tuple[str, list[Card]]]) -> str:
        return "".join(f"<h3>{html.escape(title)}</h3>{cards_html(cards, pictures)}" for title, cards in groups)

    return [("Examples per predicted class", render(strips)),
            ("Most confused pairs", render(pair_strips) if pair_strips else '<p class="muted">no confusions</p>')]


def hardest_pairs(pairs: Sequence[tuple[str, str, bool, float]], threshold: float, chips: ChipSource, count: int = WORST_ERRORS) -> str:
    """The different-people pairs closest together and the same-person pairs farthest apart
    (``(first, second, same, distance)``), both faces side by side."""
    def cards(indices: list[int]) -> list[Card]:
        return [Card([("first", pairs[i][0]), ("second", pairs[i][1])],
                     [f"{'same person' if pairs[i][2] else 'different people'}", f"distance {pairs[i][3]:.3f}",
                      "accepted" if pairs[i][3] <= threshold else "rejected"],
                     "right" if (pairs[i][3] <= threshold) == pairs[i][2] else "wrong", i) for i in indices]

    different = sorted((i for i, p in enumerate(pairs) if not p[2]), key=lambda i: pairs[i][3])[:count]
    same = sorted((i for i, p in enumerate(pairs) if p[2]), key=lambda i: -pairs[i][3])[:count]
    closest, farthest = cards(different), cards(same)
    pictures = chips([path for card in closest + farthest for _, path in card.images])
    return (f"<h3>Different people, closest</h3>{cards_html(closest, pictures)}"
            f"<h3>Same person, farthest apart</h3>{cards_html(farthest, pictures)}")
