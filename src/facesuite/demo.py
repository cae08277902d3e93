"""`facesuite demo` as a library function.

:func:`run_demo` runs the whole suite on a small, fixed sample of FACECOM (so it finishes in a
few minutes on a laptop CPU, and in seconds once the detection cache is warm):

1. enroll a gallery from the clean images of ``identities`` task_b identities (dev-split
   identities first: the shipped models were tuned away from them, so the numbers are honest);
2. analyse one clean and two distorted faces per identity against that gallery;
3. evaluate gender on a balanced sample of task_a;
4. evaluate routed recognition on the sampled identities (all their distorted copies);
5. write the recognition run's page (with its faces) and ``OUT/report.html``: the headline beside
   a face of each distortion type, then the sub-reports' pictures, then their tables.

The page for any evaluation folder (`facesuite report`) is :mod:`facesuite.report.folder`.
"""

from __future__ import annotations

import csv
import html
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facesuite.data import IdentityDataset, read_identity_folders
from facesuite.errors import InputError
from facesuite.report.faces import ChipSource, chips_of, one_per_type
from facesuite.report.html import Section, read_sections, table_html, write_html
from facesuite.text import write_rows

DEV_SPLIT = Path("splits") / "facecom_dev_identities.txt"
SEED = 0


def _pick_identities(dataset: IdentityDataset, data: Path, count: int) -> list[str]:
    """``count`` identities with clean and distorted images, dev-split identities first."""
    usable = sorted({i for _, i in dataset.clean} & {d.identity for d in dataset.distorted})
    split_file = data / DEV_SPLIT
    dev = set(split_file.read_text(encoding="utf-8").split()) if split_file.is_file() else set()
    ordered = [i for i in usable if i in dev] + [i for i in usable if i not in dev]
    if len(ordered) < 2:
        raise InputError("needs at least two identities with clean and distorted images", dataset.root)
    return ordered[:count]


def _gender_sample(source: Path, target: Path, per_class: int) -> Path:
    """Evenly spaced ``per_class`` images of each class copied into ``target/{male,female}``."""
    from facesuite.data import GENDERS
    from facesuite.io import iter_images

    shutil.rmtree(target, ignore_errors=True)
    for label in GENDERS:
        images = list(iter_images(source / label))
        if not images:
            raise InputError("class folder has no images", source / label)
        (target / label).mkdir(parents=True)
        for index in np.linspace(0, len(images) - 1, min(per_class, len(images))).astype(int):
            # Copies, not links: they hash the same, so the detection cache still applies.
            shutil.copy2(images[index], target / label / images[index].name)
    return target


@dataclass
class DemoResult:
    report: Path  # OUT/report.html
    headline: list[tuple[str, object]]  # (what, value) rows the report opens with


def run_demo(
    data: Path,
    out: Path,
    identities: int = 40,
    clean_per_identity: int = 3,
    gender_per_class: int = 60,
    log: Callable[[str], None] = print,
    gallery_uri: str | None = None,
) -> DemoResult:
    """Run the demo on the data root ``data`` (holding ``facecom/``); returns the report and its headline.
    ``gallery_uri``: where to enroll the sample (default ``out/gallery``, rebuilt each run)."""
    from facesuite.analysis import FaceAnalysis
    from facesuite.classify.gender_eval import evaluate_gender
    from facesuite.evaluate.recognition import (
        embed_dataset,
        recognition_metrics,
        write_recognition_report,
    )

    task_a, task_b = data / "facecom" / "task_a" / "train", data / "facecom" / "task_b" / "train"
    for folder in (task_a, task_b):
        if not folder.is_dir():
            raise InputError("FACECOM folder not found (pass --data or set FACESUITE_DATA to the folder holding facecom/)", folder)
    if identities < 2:
        raise InputError(f"--identities must be at least 2, got {identities}")
    started = time.perf_counter()
    timings: list[tuple[str, float]] = []

    def lap(stage: str, since: float) -> float:
        now = time.perf_counter()
        timings.append((stage, now - since))
        log(f"{stage}: {now - since:.1f} s")
        return now

    out.mkdir(parents=True, exist_ok=True)
    full = read_identity_folders(task_b)
    chosen = _pick_identities(full, data, identities)
    subset = full.subset(set(chosen))
    clean_by_id: dict[str, list[Path]] = {}
    for path, identity in subset.clean:
        clean_by_id.setdefault(identity, []).append(path)
    # A few clean images per identity is a realistic enrollment and keeps the demo fast.
    enrolled = {i: paths[:clean_per_identity] for i, paths in clean_by_id.items()}
    sample = IdentityDataset(task_b, [(p, i) for i, ps in enrolled.items() for p in ps], subset.distorted)
    analysis = FaceAnalysis()
    clock = lap("load models", started)

    # 1. gallery: the default one is rebuilt each run, so a rerun never mixes in an earlier sample;
    # in a gallery the user names, the sample's identities are replaced and the others kept.
    if gallery_uri is None:
        gallery_uri = str(out / "gallery")
        shutil.rmtree(gallery_uri, ignore_errors=True)
    skipped_total = 0
    gallery = analysis.open_gallery(gallery_uri, create=True)
    try:
        present = {identity for identity, _ in gallery.list()}
        for identity in enrolled.keys() & present:
            gallery.remove(identity)
        skipped_total += sum(len(result.skipped) for result in gallery.enroll_many(enrolled))
        clock = lap(f"enroll {len(gallery.list())} identities", clock)

        # 2. analysis of clean and distorted faces against the gallery.
        rng = random.Random(SEED)
        truth: dict[str, tuple[str, str]] = {}
        for identity in chosen:
            truth[str(clean_by_id[identity][0])] = (identity, "clean")
            copies = [d for d in subset.distorted if d.identity == identity]
            for item in rng.sample(copies, min(2, len(copies))):
                truth[str(item.path)] = (identity, item.distortion)
        analysis.gallery = gallery
        results, skipped = analysis.faces([Path(p) for p in truth], progress="analyze")
        skipped_total += len(skipped)
    finally:
        analysis.gallery = None
        gallery.close()
    analysis_rows = [r.to_dict() | {"true_identity": truth[r.source][0], "true_distortion": truth[r.source][1]} for r in results]
    write_rows(out / "analysis.csv", analysis_rows)
    clock = lap(f"analyse {len(results)} faces", clock)

    # 3. gender on a balanced task_a sample.
    gender_data = _gender_sample(task_a, out / "gender-sample", gender_per_class)
    gender_metrics, skipped = evaluate_gender(gender_data, analysis, out / "gender")
    skipped_total += len(skipped)
    clock = lap("gender evaluation", clock)

    # 4. routed recognition on the sampled identities.
    embedded, skipped, routing = embed_dataset(analysis, sample)
    skipped_total += len(skipped)
    recognition = recognition_metrics(embedded, analysis.operating_point, seed=SEED)
    recognition.update(embedder=analysis.embedder.name, pipeline="routed", skipped=len(skipped), routing=routing)
    clock = lap("recognition evaluation", clock)

    # 5. the reports: the recognition run's page (with its faces), then the demo's own page.
    write_recognition_report(out / "recognition", embedded, recognition, f"Recognition on {len(chosen)} FACECOM identities (routed)",
                             analysis.operating_point, seed=SEED, chips=chips_of(analysis))
    headline = _headline(analysis_rows, gender_metrics, recognition, time.perf_counter() - started, skipped_total)
    report = _write_demo_report(out, data, analysis_rows, headline, timings, gallery_uri, chips_of(analysis))
    lap("reports", clock)
    log(f"total: {time.perf_counter() - started:.1f} s")
    return DemoResult(report, headline)


def _rate(rows: list[dict], key: str, truth: str, where: Callable[[dict], bool]) -> str:
    chosen = [r for r in rows if where(r)]
    if not chosen:
        return "n/a"
    right = sum(r[key] == r[truth] for r in chosen)
    return f"{right}/{len(chosen)} ({right / len(chosen):.1%})"


def _headline(rows: list[dict], gender: dict, recognition: dict, seconds: float, skipped: int) -> list[tuple[str, object]]:
    """What the demo found, in the order the report and the terminal show it. The first two rows
    are final answers on a few faces (a name, a source-photo match, unknown...); the recognition
    rows measure every distorted copy, by face alone (top-1) and at the operating point."""
    is_clean = lambda r: r["true_distortion"] == "clean"
    is_distorted = lambda r: r["true_distortion"] != "clean"
    ident, verif, decided = recognition["identification"], recognition["verification"], recognition["open_set"]["overall"]
    return [
        ("final answer right, the enrolled clean photos themselves (a sanity check)",
         _rate(rows, "identity", "true_identity", is_clean)),
        ("final answer right, two distorted copies per person (a name by face or by source-photo match)",
         _rate(rows, "identity", "true_identity", is_distorted)),
        ("distortion type named correctly", _rate(rows, "distortion", "true_distortion", lambda r: True)),
        ("gender accuracy (task_a sample)", gender.get("accuracy", "n/a")),
        ("gender macro-F1", gender.get("macro_f1", "n/a")),
        ("every distorted copy: nearest identity right by face alone (top-1, no threshold)", ident["top1"]),
        ("every distorted copy: answered with a name at the operating point (coverage)", decided["coverage"]),
        ("every distorted copy: answered with a wrong name", decided["wrong_identity_rate"]),
        ("strangers (own identity left out) answered with a name (FPIR)", decided["fpir"]),
        ("verification AUC", verif["auc"]),
        ("files skipped", skipped),
        ("total time (s)", f"{seconds:.1f}"),
    ]


def _write_demo_report(out: Path, data: Path, rows: list[dict], headline: list[tuple[str, object]],
                       timings: list[tuple[str, float]], gallery_uri: str, chips: ChipSource) -> Path:
    """``OUT/report.html``: the headline beside a face of each distortion type, then the pictures
    of the recognition and gender reports (their plots, the faces per distortion type, the
    errors), then the tables."""
    from facesuite.gallery import display_uri

    recognition = read_sections(out / "recognition" / "report.html")
    with open(out / "recognition" / "predictions.csv", newline="", encoding="utf-8") as handle:
        predictions = list(csv.DictReader(handle))
    gender = read_sections(out / "gender" / "report.html")

    def lifted(sections: list[Section], prefix: str, pictures: bool) -> list[Section]:
        # Pictures: plots and faces; the rest are tables (the summaries are the demo's headline).
        return [(f"{prefix}: {heading}", body) for heading, body in sections
                if heading != "Summary" and (("<img" in body or "<figure" in body) == pictures)]

    summary = table_html(["result", "value"], headline, "headline")
    links = ("<p class='muted'>Each part has its own page: <a href='recognition/report.html'>recognition</a>, "
             "<a href='gender/report.html'>gender</a>; <a href='analysis.csv'>analysis.csv</a> holds one row per analysed face. "
             f"Open the dashboard on this gallery: <code>facesuite serve --gallery {html.escape(display_uri(gallery_uri))}</code>, "
             "then <code>http://127.0.0.1:8000/</code>.</p>")
    columns = ["path", "true_identity", "identity", "distance", "true_distortion", "distortion", "route", "gender", "p_female", "age"]
    analysis = table_html(columns, [[Path(r["path"]).name if c == "path" else r[c] for c in columns] for r in rows])
    sections = [
        ("Headline", f"<div class='hero'>{summary}<div><p class='muted'>A typical probe of each distortion type (its "
                     "median distance) beside its nearest gallery face; the recognition run is below.</p>"
                     f"{one_per_type(predictions, chips)}</div></div><p class='muted'>Data: {html.escape(str(data))}</p>"),
        *lifted(recognition, "Recognition", pictures=True),
        *lifted(gender, "Gender", pictures=True),
        ("Analysed faces against the gallery", analysis),
        *lifted(recognition, "Recognition", pictures=False),
        *lifted(gender, "Gender", pictures=False),
        ("Time per stage", table_html(["stage", "seconds"], [[s, f"{t:.1f}"] for s, t in timings]) + links),
    ]
    return write_html(out / "report.html", "facesuite demo", sections)
