"""From images to aligned face chips: decode, detect (batched, cached), align.

Inputs are anything :func:`facesuite.io.decode` takes (paths, bytes, arrays, Pillow images). A bad
input inside a batch is reported as :class:`Skipped` (the input and its :class:`InputError`), so
a large folder is processed to the end and the skips are counted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

import numpy as np
from tqdm import tqdm

from facesuite.config import cache_dir
from facesuite.detect import DetectorSettings, Detection, FaceDetector, fallback_face
from facesuite.detect.cache import DetectionCache
from facesuite.embed import ChipSpec
from facesuite.errors import InputError, Skipped
from facesuite.io import Decoded, ImageInput, decode, load_image, write_image
from facesuite.parallel import ordered_map
from facesuite.text import csv_writer, open_csv

Result = TypeVar("Result")


@dataclass
class Crop:
    """A detected (or fallback) face in one file and its aligned chip.

    ``face`` is in the pixels of the image as loaded (shrunk when over ``io.MAX_SIDE``), the pixels
    every later stage works in; :attr:`input_face` is the same face in the file's own pixels, the
    one every output reports.
    """

    path: Path | str  # the file, or the name of an input given in memory
    face: Detection
    chip: np.ndarray
    image_shape: tuple[int, int]
    face_index: int = 0  # 0 is the main face of the image; others only with all_faces
    scale: tuple[float, float] = (1.0, 1.0)  # loaded pixels -> the file's pixels, per axis
    # The decoded pixels of an input given in memory (a file is read again when needed, so a
    # folder's worth of crops does not hold every image).
    image: np.ndarray | None = field(default=None, repr=False)

    def pixels(self) -> np.ndarray:
        """The whole image this face is in, at the size it was analysed at."""
        return self.image if self.image is not None else load_image(self.path)

    def centre_box(self, settings: DetectorSettings, chip: ChipSpec) -> Crop:
        """This image's centre box in place of this face, as where the detector finds none."""
        image = self.pixels()
        face = fallback_face(image.shape, settings)
        return replace(self, face=face, chip=face.chip(image, chip.size, chip.padding))

    @property
    def input_face(self) -> Detection:
        """:attr:`face` in the file's own pixels, its box clipped to the image.

        The detector's box of a face at the photo's edge reaches past it (alignment reads the
        landmarks, not the box); a box reported past the edge breaks a user's ``image[y1:y2, x1:x2]``
        (negative indices wrap around). The landmarks are kept as found."""
        sx, sy = self.scale
        height, width = self.image_shape
        x1, y1, x2, y2 = self.face.box
        box = (min(max(x1 * sx, 0.0), width * sx), min(max(y1 * sy, 0.0), height * sy),
               min(max(x2 * sx, 0.0), width * sx), min(max(y2 * sy, 0.0), height * sy))
        return replace(self.face, box=box, landmarks=np.asarray(self.face.landmarks, dtype=np.float64) * (sx, sy))


class FaceExtractor:
    """Turns image paths into :class:`Crop` objects, reusing cached detections."""

    def __init__(
        self,
        settings: DetectorSettings | None = None,
        use_cache: bool = True,
        cache_folder: str | Path | None = None,
        batch_size: int = 16,
    ) -> None:
        self.detector = FaceDetector(settings)
        self.settings = self.detector.settings
        self.batch_size = batch_size
        self._cache = DetectionCache(cache_folder or cache_dir()) if use_cache else None

    def map_batches(
        self, images: Sequence[ImageInput], work: Callable[[list[Crop | Skipped]], Result], chip: ChipSpec = ChipSpec(),
        progress: str | None = None, max_faces: int | None = None, keep_pixels: bool = False,
    ) -> Iterator[Result]:
        """``work`` of each batch's crops and skips (in input order, main face first), yielded
        batch by batch in order; batches run side by side on every core (:mod:`facesuite.parallel`),
        each through extraction and then ``work``. ``progress`` labels a progress bar.
        ``max_faces``: faces per image (default 1, every face with the ``all_faces`` setting;
        ``None`` there means every face). ``keep_pixels``: every crop keeps its decoded image, files
        too, for a ``work`` that reads them again."""
        batches = [images[start : start + self.batch_size] for start in range(0, len(images), self.batch_size)]
        bar = tqdm(total=len(images), desc=progress, unit="img", disable=progress is None, leave=False)
        results = ordered_map(lambda batch: work(list(self._process(batch, chip, max_faces, keep_pixels))), batches)
        for batch, result in zip(batches, results):
            yield result
            bar.update(len(batch))
        bar.close()

    def iter_crops(
        self, images: Sequence[ImageInput], chip: ChipSpec = ChipSpec(), progress: str | None = None,
        max_faces: int | None = None, keep_pixels: bool = False,
    ) -> Iterator[Crop | Skipped]:
        """The Crops (main face first) or a Skipped of each input, in order (arguments as
        :meth:`map_batches`)."""
        for items in self.map_batches(images, list, chip, progress, max_faces, keep_pixels):
            yield from items

    def crops(self, images: Sequence[ImageInput], chip: ChipSpec = ChipSpec(), progress: str | None = None,
              max_faces: int | None = None) -> tuple[list[Crop], list[Skipped]]:
        """All crops and all skips for ``images``."""
        crops: list[Crop] = []
        skipped: list[Skipped] = []
        for item in self.iter_crops(images, chip, progress, max_faces):
            (crops if isinstance(item, Crop) else skipped).append(item)
        return crops, skipped

    def _process(self, batch: Sequence[ImageInput], chip: ChipSpec, max_faces: int | None,
                 keep_pixels: bool = False) -> Iterable[Crop | Skipped]:
        key = self.settings.key()
        if max_faces is None:
            max_faces = 0 if self.settings.all_faces else 1  # 0: every face
        # The cache holds the main face of each image only, so more faces are detected afresh.
        use_cache = self._cache is not None and not self.settings.assume_cropped and max_faces == 1
        loaded: list[Decoded | Skipped] = []
        for item in batch:
            try:
                loaded.append(decode(item))
            except InputError as error:
                loaded.append(Skipped.of(item, error))
        images = [(entry.name, entry.pixels, entry.digest) for entry in loaded if not isinstance(entry, Skipped)]
        # Cache lookups: a cached None means "MTCNN found no face", which is worth remembering too.
        found: dict[str, list[Detection]] = {}
        if use_cache:
            for _, _, digest in images:
                hit, face = self._cache.get(digest, key)
                if hit:
                    found[digest] = [face] if face else []
        pending = [entry for entry in images if entry[2] not in found]
        if pending:
            detections = self.detector.detect([image for _, image, _ in pending])
            fresh = {digest: faces for (_, _, digest), faces in zip(pending, detections)}
            found.update(fresh)
            if use_cache:
                self._cache.put_many([(digest, key, faces[0] if faces else None) for digest, faces in fresh.items()])
        for entry in loaded:
            if isinstance(entry, Skipped):
                yield entry
                continue
            image = entry.pixels
            faces = found[entry.digest] or [fallback_face(image.shape, self.settings)]
            for index, face in enumerate(faces[:max_faces] if max_faces else faces):
                yield Crop(entry.path or entry.name, face, face.chip(image, chip.size, chip.padding), image.shape[:2], index,
                           entry.scale, image if keep_pixels or not entry.path else None)


@dataclass
class DetectSummary:
    images: int
    detected: int
    fallback: int
    skipped: list[Skipped]
    seconds: float

    def to_dict(self) -> dict:
        return {
            "images": self.images,
            "detected": self.detected,
            "fallback": self.fallback,
            "skipped": len(self.skipped),
            "seconds": round(self.seconds, 3),
            "ms_per_image": round(1000 * self.seconds / max(self.images, 1), 2),
        }


def export_crops(
    extractor: FaceExtractor, paths: Sequence[Path], out: Path, chip: ChipSpec, root: Path | None = None
) -> DetectSummary:
    """Write each aligned crop under ``out`` (mirroring paths below ``root``) and ``detections.csv``."""
    import time

    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    detected = fallback = 0
    skipped: list[Skipped] = []
    written: set[Path] = set()
    with open_csv(out / "detections.csv") as handle:
        writer = csv_writer(handle)
        writer.writerow(["path", "crop", "box", "landmarks", "score", "fallback"])
        for item in extractor.iter_crops(paths, chip, progress="detect"):
            if isinstance(item, Skipped):
                skipped.append(item)
                continue
            relative = _relative(item.path, root)
            target = (out / "crops" / relative).with_suffix(".png")
            if item.face_index:
                target = target.with_name(f"{target.stem}_face{item.face_index}.png")
            # x.jpg and x.png in one folder (or two folders' x.jpg given side by side) would share a
            # crop name: later ones are numbered, in input order, so no crop overwrites another.
            stem, copy = target.stem, 1
            while target in written:
                copy += 1
                target = target.with_name(f"{stem}_{copy}.png")
            written.add(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            write_image(target, item.chip)
            record = item.input_face.to_dict()
            writer.writerow([str(item.path), str(target.relative_to(out)), record["box"], record["landmarks"], record["score"], int(item.face.fallback)])
            fallback += item.face.fallback
            detected += not item.face.fallback
    return DetectSummary(len(paths), detected, fallback, skipped, time.perf_counter() - started)


def _relative(path: Path, root: Path | None) -> Path:
    if root is not None:
        try:
            return path.resolve().relative_to(root.resolve())
        except ValueError:
            pass
    return Path(path.name)
