"""However the photo is framed: tight crops and turned photos against the same faces as taken.

Run: ``python benchmarks/framing.py [--data DIR] [--turned 200]``. On the FACECOM dev identities:

- tight crops: every clean photo cut to its face box plus 0-10% (random, fixed seed), against
  the photo itself: verification TAR at FAR 1% and 0.1% over every same-person and
  different-person pair, and gender accuracy on the task_a dev faces (cut the same way);
- turned photos: ``--turned`` dev photos turned 90, 180 and 270 degrees: share where a face is
  found with the right turn, and where gender is the same as on the upright photo.
Everything goes through ``FaceAnalysis`` with its defaults (cache, routes, gender on), except that
gender answers every face (``abstain=False``): the figure compared is the answer-everything one.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np

from facesuite import FaceAnalysis
from facesuite.config import data_root
from facesuite.data import facecom_identity, read_split
from facesuite.embed import cosine_distance
from facesuite.evaluate.verification import tar_at_far
from facesuite.io import load_image
from facesuite.train.presence import tight_crop


def pair_tars(vectors: np.ndarray, identities: list[str]) -> tuple[float, float, int, int]:
    """TAR at FAR 1% and 0.1% over every pair, and the numbers of same- and different-person pairs."""
    rows, cols = np.triu_indices(len(vectors), k=1)
    distances = np.asarray(cosine_distance(vectors[rows], vectors[cols]))
    same = np.array([identities[i] == identities[j] for i, j in zip(rows, cols)])
    return tar_at_far(distances, same, 0.01), tar_at_far(distances, same, 0.001), int(same.sum()), int((~same).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(data_root()))
    parser.add_argument("--turned", type=int, default=200, help="dev photos to turn")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    root, rng = Path(args.data), random.Random(args.seed)
    dev = read_split(root / "splits/facecom_dev_identities.txt")
    people = root / "facecom/task_b/train"
    photos = sorted(p for identity in sorted(dev) for p in (people / identity).glob("*.jpg"))
    app = FaceAnalysis(abstain=False)

    def cut(paths: list[Path]) -> tuple[list, list[np.ndarray]]:
        faces = [app.get(path)[0] for path in paths]
        return faces, [tight_crop(load_image(p), f.box, rng.uniform(0.0, 0.1)) for p, f in zip(paths, faces)]

    full, crops = cut(photos)
    tight = [app.get(crop)[0] for crop in crops]
    identities = [p.parent.name for p in photos]
    print(f"tight crops of {len(photos)} dev photos ({len(set(identities))} people); crop sides "
          f"{np.percentile([min(c.shape[:2]) for c in crops], [10, 50, 90]).round().astype(int).tolist()} px (10/50/90%)")
    for name, faces in (("photo as taken", full), ("tight crop", tight)):
        far1, far01, genuine, impostor = pair_tars(np.stack([f.embedding for f in faces]), identities)
        missing = sum(f.no_face for f in faces)
        print(f"  {name:15s} TAR@FAR1% {far1:.4f}  TAR@FAR0.1% {far01:.4f}  ({genuine} same / {impostor} different pairs; no face {missing})")

    gender_photos = [(p, label) for label in ("male", "female") for p in sorted((root / "facecom/task_a/train" / label).glob("*.jpg"))
                     if facecom_identity(p.stem) in dev]
    g_full, g_crops = cut([p for p, _ in gender_photos])
    g_tight = [app.get(crop)[0] for crop in g_crops]
    truth = [label for _, label in gender_photos]
    for name, faces in (("photo as taken", g_full), ("tight crop", g_tight)):
        accuracy = np.mean([f.gender == t for f, t in zip(faces, truth)])
        print(f"  gender, {name:15s} accuracy {accuracy:.4f} on {len(truth)} task_a dev faces")

    sample = rng.sample(photos, min(args.turned, len(photos)))
    upright = [app.get(p)[0] for p in sample]
    for turn in (90, 180, 270):
        turned = [app.get(np.ascontiguousarray(np.rot90(load_image(p), turn // 90)))[0] for p in sample]
        found = np.mean([f.turn == (360 - turn) % 360 and not f.no_face for f in turned])
        same_gender = np.mean([f.gender == u.gender for f, u in zip(turned, upright)])
        print(f"turned {turn:3d} degrees: face found upright {found:.3f}, gender unchanged {same_gender:.3f} ({len(sample)} photos)")


if __name__ == "__main__":
    main()
