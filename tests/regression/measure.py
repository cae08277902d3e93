"""Headline figures on a fixed slice of the dev splits, and how much that slice can resolve.

    python tests/regression/measure.py [--out tests/regression/slice_figures.json]

writes the pin that ``tests/regression/test_regression_slice.py`` holds the code to. Data: ``$FACESUITE_DATA``
(default ../shared/data). Remake the pin, and commit it with the change, when a change moves a
figure on purpose.

**The slice** (the same rule in the script and the test, :func:`recognition_identities` and
:func:`gender_faces`):

- recognition: every third identity of the name-sorted FACECOM dev split (66 of 198, 21 of them
  with two or more clean photos: the split's own share), evaluated as ``facesuite eval
  recognition --protocol facecom`` and ``--protocol cross`` do;
- gender: 200 dev faces, 50 male and 50 female FACECOM task_a faces of dev identities and 100
  UTKFace dev files, each evenly spaced through its name-sorted list (FACECOM names sort by
  identity, UTKFace's by age), evaluated as ``facesuite eval gender`` does.

**The figures** come from each command's metrics.json: top-1 (``identification.top1``) and the
wrong-identity rate at the operating point (``open_set.overall.wrong_identity_rate``, mated
searches answered with someone else's name) per protocol, and gender accuracy with every face
answered (``accuracy``). Recognition runs with ``--no-source-match``: neither figure counts
source matches either way, and predictions.csv then carries each probe's face decision, which
the bootstrap reads.

**The noise**: a bootstrap over identities (all of an identity's probes or faces drawn together;
a UTKFace file is an identity of its own) of each figure, from the command's predictions.csv,
checked to give the figure of metrics.json. The tolerance is twice its standard error, and never
under 1.5 faces' worth (1.5 / the faces the figure counts): the figures are exact on a fixed
slice, up to float differences on another CPU, which can flip a face sitting on a threshold; one
flipped face passes, two fail. A wrong-identity rate of 0 (as when this was written) has a
bootstrap error of 0, so the floor decides: one wrong name passes, two fail (when this was
written, the nearest wrong identity of any probe lay about 0.02 in cosine distance beyond its
threshold, far past float noise, so even one wrong name means the decision changed).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import warnings
from datetime import date
from pathlib import Path
from unittest.mock import patch

import numpy as np
from scipy.stats import DegenerateDataWarning, bootstrap

from facesuite.cli import main as facesuite
from facesuite.config import data_root
from facesuite.data import GENDERS, facecom_identity, read_split, utkface_attributes
from facesuite.evaluate.open_set import PROTOCOLS

PIN = Path(__file__).with_name("slice_figures.json")
COMMAND = "python tests/regression/measure.py"
DEV_IDENTITIES = "splits/facecom_dev_identities.txt"
UTKFACE_DEV = "splits/utkface_dev.txt"
TASK_A = "facecom/task_a/train"
TASK_B = "facecom/task_b/train"
UTKFACE = "utkface/images"
IDENTITY_STRIDE = 3
FACECOM_GENDER_PER_CLASS = 50
UTKFACE_GENDER_FACES = 100
RESAMPLES = 2000
SEED = 0
STANDARD_ERRORS = 2
FLOOR_FACES = 1.5


def recognition_identities(root: Path) -> list[str]:
    """Every third identity of the name-sorted FACECOM dev split."""
    return sorted(read_split(root / DEV_IDENTITIES))[::IDENTITY_STRIDE]


def _evenly_spaced(items: list, count: int) -> list:
    return [items[i] for i in np.linspace(0, len(items) - 1, count).round().astype(int)]


def gender_faces(root: Path) -> list[tuple[str, str, str]]:
    """``(path relative to root, gender, identity)`` of the 200 gender faces."""
    dev = read_split(root / DEV_IDENTITIES)
    faces = []
    for label in GENDERS:
        files = sorted(p.name for p in (root / TASK_A / label).glob("*.jpg") if facecom_identity(p.stem) in dev)
        faces += [(f"{TASK_A}/{label}/{name}", label, facecom_identity(Path(name).stem))
                  for name in _evenly_spaced(files, FACECOM_GENDER_PER_CLASS)]
    utkface = sorted(name for name in read_split(root / UTKFACE_DEV) if utkface_attributes(name))
    faces += [(f"{UTKFACE}/{name}", utkface_attributes(name)[1], name) for name in _evenly_spaced(utkface, UTKFACE_GENDER_FACES)]
    return faces


def _run(argv: list[str]) -> None:
    status = facesuite(argv)
    if status != 0:
        raise RuntimeError(f"facesuite {' '.join(argv)} exited {status}")


def run_commands(root: Path, work: Path) -> dict[str, Path]:
    """Runs the three evaluations of the slice under ``work``; their output folders by name."""
    # An empty home: the shipped calibrations only, whatever this machine or an earlier test stored.
    with patch.dict(os.environ, {"FACESUITE_HOME": str(work / "home")}):
        return _run_commands(root, work)


def _run_commands(root: Path, work: Path) -> dict[str, Path]:
    work.mkdir(parents=True, exist_ok=True)
    split = work / "identities.txt"
    split.write_text("\n".join(recognition_identities(root)) + "\n", encoding="utf-8")
    outs = {}
    for protocol in PROTOCOLS:
        outs[protocol] = work / protocol
        _run(["eval", "recognition", str(root / TASK_B), "--split", str(split), "--protocol", protocol,
              "--no-source-match", "--out", str(outs[protocol])])
    labels = work / "gender.csv"
    with open(labels, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "gender"])
        writer.writerows([str(root / path), label] for path, label, _ in gender_faces(root))
    outs["gender"] = work / "gender"
    _run(["eval", "gender", str(labels), "--gradcam", "0", "--out", str(outs["gender"])])
    return outs


def figures(outs: dict[str, Path]) -> dict[str, float]:
    """Each pinned figure, from its command's metrics.json."""
    values = {}
    for protocol in PROTOCOLS:
        metrics = json.loads((outs[protocol] / "metrics.json").read_text(encoding="utf-8"))
        values[f"{protocol}.top1"] = metrics["identification"]["top1"]
        values[f"{protocol}.wrong_identity_rate"] = metrics["open_set"]["overall"]["wrong_identity_rate"]
    values["gender.accuracy"] = json.loads((outs["gender"] / "metrics.json").read_text(encoding="utf-8"))["accuracy"]
    return values


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def outcomes(root: Path, outs: dict[str, Path]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per figure, each counted face's 0/1 outcome and its identity, from predictions.csv."""
    enrolled = set(recognition_identities(root))
    per_figure = {}
    for protocol in PROTOCOLS:
        rows = _rows(outs[protocol] / "predictions.csv")
        identities = np.array([row["true_identity"] for row in rows])
        per_figure[f"{protocol}.top1"] = (np.array([row["predicted_identity"] == row["true_identity"] for row in rows]), identities)
        # Answered with an enrolled person's name that is not the probe's own.
        wrong = [row["decision"] in enrolled and row["decision"] != row["true_identity"] for row in rows]
        per_figure[f"{protocol}.wrong_identity_rate"] = (np.array(wrong), identities)
    identity_of = {str(root / path): identity for path, _, identity in gender_faces(root)}
    rows = _rows(outs["gender"] / "predictions.csv")
    per_figure["gender.accuracy"] = (np.array([row["true"] == row["predicted"] for row in rows]),
                                     np.array([identity_of[row["path"]] for row in rows]))
    return per_figure


def identity_bootstrap_error(outcome: np.ndarray, identities: np.ndarray) -> float:
    """Standard error of the mean of ``outcome`` over bootstrap draws of whole identities."""
    names, which = np.unique(identities, return_inverse=True)
    hits = np.bincount(which, weights=outcome.astype(float), minlength=len(names))
    counts = np.bincount(which, minlength=len(names)).astype(float)

    def share(drawn: np.ndarray, axis: int = -1) -> np.ndarray:
        drawn = drawn.astype(int)
        return hits[drawn].sum(axis=axis) / counts[drawn].sum(axis=axis)

    with warnings.catch_warnings():
        # A figure every identity scores alike (a rate of 0) has no interval; its error is 0.
        warnings.simplefilter("ignore", DegenerateDataWarning)
        result = bootstrap((np.arange(len(names)),), share, n_resamples=RESAMPLES, vectorized=True,
                           method="percentile", rng=np.random.default_rng(SEED))
    return float(result.standard_error)


def measure(root: Path, work: Path) -> dict:
    """The pin: the slice, each figure with its bootstrap error and tolerance, how it was made."""
    outs = run_commands(root, work)
    values, per_figure = figures(outs), outcomes(root, outs)
    pinned = {}
    for name, value in values.items():
        outcome, identities = per_figure[name]
        if not np.isclose(outcome.mean(), value, rtol=0, atol=1e-12):
            raise RuntimeError(f"{name}: predictions.csv gives {outcome.mean()} but metrics.json {value}: "
                               "the bootstrap would not measure the figure; fix outcomes() in this script")
        error = identity_bootstrap_error(outcome, identities)
        pinned[name] = {"value": value, "standard_error": error,
                        "tolerance": max(STANDARD_ERRORS * error, FLOOR_FACES / outcome.size),
                        "faces": int(outcome.size), "identities": int(np.unique(identities).size)}
    return {
        "about": (f"Figures on a fixed slice of the dev splits, read from each command's metrics.json; tolerance = "
                  f"max({STANDARD_ERRORS} x the standard error of a bootstrap over identities, {FLOOR_FACES} faces / faces "
                  "counted): one face flipped by float differences on another CPU passes, two fail. The wrong-identity "
                  "rate of 0 has a bootstrap error of 0, so the floor holds it: one wrong name passes, two fail. "
                  "tests/regression/measure.py says why; tests/regression/test_regression_slice.py re-measures and compares."),
        "command": COMMAND,
        "date": date.today().isoformat(),
        "figures": pinned,
        "bootstrap": {"unit": "identity (a UTKFace file is one)", "resamples": RESAMPLES, "seed": SEED},
        "slice": {
            "recognition": f"one identity in {IDENTITY_STRIDE} (the 1st, 4th, 7th, ...) of the name-sorted {DEV_IDENTITIES}; `facesuite eval "
                           f"recognition $FACESUITE_DATA/{TASK_B} --split SLICE --protocol facecom|cross --no-source-match`",
            "gender": f"{FACECOM_GENDER_PER_CLASS} male and {FACECOM_GENDER_PER_CLASS} female {TASK_A} faces of dev "
                      f"identities and {UTKFACE_GENDER_FACES} {UTKFACE_DEV} files, each evenly spaced through its "
                      "name-sorted list; `facesuite eval gender LABELS.csv --gradcam 0`",
            "identities": recognition_identities(root),
            "gender_faces": [path for path, _, _ in gender_faces(root)],
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=PIN, help=f"JSON file to write (default {PIN})")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        pin = measure(data_root(), Path(work))
    args.out.write_text(json.dumps(pin, indent=1) + "\n", encoding="utf-8")
    for name, figure in pin["figures"].items():
        print(f"{name}: {figure['value']:.4f} +- {figure['tolerance']:.4f} (SE {figure['standard_error']:.4f}, "
              f"{figure['faces']} faces, {figure['identities']} identities)")
    print(f"pinned: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
