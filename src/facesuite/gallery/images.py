"""A gallery seen through :class:`~facesuite.analysis.FaceAnalysis`: images in, identities out.

:meth:`FaceAnalysis.open_gallery` returns one. It enrols the main face of each photo (each photo
once per identity, by content), embedded as :meth:`FaceAnalysis.get` embeds it (through its
route), into any backend (:mod:`facesuite.gallery.base`), and decides each searched face by the one
rule (:mod:`facesuite.decide`), a processed copy of an enrolled photo by that photo
(:mod:`facesuite.gallery.source_match`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from facesuite.decide import SAME, OperatingPoint
from facesuite.errors import InputError, Skipped
from facesuite.gallery.base import GalleryStore, Match, check_identity, rows_to_add
from facesuite.io import ImageInput, decode
from facesuite.text import utf8_path

if TYPE_CHECKING:
    from facesuite.analysis import Face, FaceAnalysis


@dataclass
class Enrolled:
    identity: str
    faces: int  # faces added
    skipped: list[Skipped]
    already: int = 0  # photos the identity already held (by content) or given twice: not added again
    # (photo, another identity, distance): a face added here that verify would call the same
    # person as someone already enrolled under another name. Added all the same; worth a look.
    resembles: list[tuple[str, str, float]] = field(default_factory=list)
    # (photo, faces in it): photos holding several faces, of which the most prominent was added.
    group_photos: list[tuple[str, int]] = field(default_factory=list)


class Gallery:
    """A stored gallery seen through one :class:`FaceAnalysis`: images in, identities out.

    Faces are embedded the way :meth:`FaceAnalysis.get` embeds them (each through its route).
    """

    def __init__(self, analysis: FaceAnalysis, store: GalleryStore) -> None:
        self.analysis = analysis
        self.store = store  # a facesuite.gallery.GalleryStore
        self._sources = None  # the enrolled frames (SourceIndex), loaded on first use
        self._sources_stamp: int | None = None

    @property
    def threshold(self) -> float:
        return self.store.threshold

    @property
    def operating_point(self) -> OperatingPoint:
        """The analysis's operating point with this gallery's threshold as the ceiling."""
        return self.analysis.operating_point.for_gallery(self.store.threshold)

    @property
    def embedder(self) -> str:
        return self.store.embedder

    def enroll(self, identity: str, images: Sequence[ImageInput], sources: Sequence[str] | None = None) -> Enrolled:
        """Add the main face of each image as ``identity`` (one transaction); ``sources``
        name the images in the gallery (default: a file's absolute path, else the input's name).

        A photo the identity already holds is not added again, and is counted in
        :attr:`Enrolled.already`: the same file bytes (the same bytes given in memory), or for an
        array or PIL image the same decoded pixels. Enrolling a folder twice adds nothing."""
        if sources is not None and len(sources) != len(images):
            raise ValueError("sources must name every image")
        named = list(zip(images, sources)) if sources is not None else [(image, None) for image in images]
        return self.enroll_many({identity: named})[0]

    def enroll_many(self, people: dict[str, Sequence[ImageInput] | Sequence[tuple[ImageInput, str | None]]],
                    progress: str | None = None) -> list[Enrolled]:
        """:meth:`enroll` for many identities, each in its own transaction, with faces detected
        and embedded in full batches across identities (most have one or two photos)."""
        people = {identity: [item if isinstance(item, tuple) else (item, None) for item in items]
                  for identity, items in people.items()}
        for identity in people:  # a bad name is refused before any photo is read
            check_identity(utf8_path(identity), self.store.path)
        results: list[Enrolled] = []
        bar = tqdm(total=len(people), desc=progress, disable=progress is None, unit="id")
        chunk: list[str] = []
        for identity in people:
            chunk.append(identity)
            if sum(len(people[i]) for i in chunk) >= self.analysis.batch_size:
                results += self._enroll_chunk({i: people[i] for i in chunk})
                bar.update(len(chunk))
                chunk = []
        if chunk:
            results += self._enroll_chunk({i: people[i] for i in chunk})
            bar.update(len(chunk))
        bar.close()
        return results

    def _enroll_chunk(self, people: dict[str, list[tuple[ImageInput, str | None]]]) -> list[Enrolled]:
        inputs, owners, sources = [], [], []
        skipped: dict[str, list[Skipped]] = {identity: [] for identity in people}
        already = dict.fromkeys(people, 0)
        for identity, items in people.items():
            decoded = []
            for image, name in items:
                try:
                    decoded.append((decode(image, name), name))
                except InputError as error:
                    skipped[identity].append(Skipped.of(image, error))
            # Photos the identity holds are left out before the costly detection and embedding;
            # the store checks again as it writes (another enroll may have added one meanwhile). A
            # photo enrolled as someone else is skipped: one photo's main face is one person.
            owners_now = self.store.enrolled_as([entry.digest for entry, _ in decoded])
            others = [i for i, (entry, _) in enumerate(decoded) if owners_now.get(entry.digest, utf8_path(identity)) != utf8_path(identity)]
            for i in others:
                entry = decoded[i][0]
                skipped[identity].append(Skipped.of(entry.path or entry.name, InputError(
                    f"already enrolled as {owners_now[entry.digest]!r} (one photo shows one person)", entry.name)))
            decoded = [item for i, item in enumerate(decoded) if i not in others]
            held = {digest for digest, owner in owners_now.items() if owner == utf8_path(identity)}
            new = rows_to_add([entry.digest for entry, _ in decoded], held)
            already[identity] = len(decoded) - len(new)
            for entry, name in (decoded[i] for i in new):
                inputs.append(entry)
                owners.append(identity)
                # A file is named by its absolute path: a relative one means nothing to a later
                # reader of the gallery run from another folder.
                sources.append(str(entry.path.resolve()) if name is None and entry.path is not None else entry.name)
        # One face per decoded input, in order (decoded inputs cannot fail again); a photo with no
        # face is skipped, with its reason.
        faces = [result[0] for result in self.analysis.get_batch(inputs, identify=False)]
        for index in [i for i, face in enumerate(faces) if face.no_face]:
            skipped[owners[index]].append(Skipped.of(inputs[index].path or inputs[index].name,
                                                     InputError("no face found", inputs[index].name)))
        keep = [i for i, face in enumerate(faces) if not face.no_face]
        inputs, owners, sources = [inputs[i] for i in keep], [owners[i] for i in keep], [sources[i] for i in keep]
        vectors = np.stack([faces[i].embedding for i in keep]) if keep else np.zeros((0, self.analysis.embedder.dim), np.float32)
        frames = None
        if self.store.keeps_frames:
            from facesuite.gallery.source_match import frame_of, frame_to_bytes

            # The chunk's decoded inputs, not crop.pixels(): that reads each file from disk again.
            frames = [frame_to_bytes(frame_of(entry.pixels)) for entry in inputs]
        resembles = self._resembling([faces[i] for i in keep], owners, sources)
        crowds = [faces[i]._crop.face.faces_in_image for i in keep]
        results = []
        for identity in people:
            rows = [i for i, owner in enumerate(owners) if owner == identity]
            # The store's text is UTF-8: a folder or file name that is not is kept with \xNN escapes.
            name, added = utf8_path(identity), 0
            if rows:
                added = self.store.enroll(name, vectors[rows], [utf8_path(sources[i]) for i in rows],
                                          [inputs[i].digest for i in rows],
                                          **({"frames": [frames[i] for i in rows]} if frames is not None else {}))
            results.append(Enrolled(name, added, skipped[identity], already[identity] + len(rows) - added,
                                    [resembles[i] for i in rows if i in resembles],
                                    [(sources[i], crowds[i]) for i in rows if crowds[i] > 1]))
        return results

    def _resembling(self, faces: Sequence[Face], owners: Sequence[str], sources: Sequence[str]) -> dict[int, tuple[str, str, float]]:
        """The faces about to be enrolled that the pair rule calls the same person as an identity
        already enrolled under another name (a photo filed under the wrong name would otherwise
        take that person's matches without a word): index -> (photo, that identity, distance)."""
        if not faces or not len(self):
            return {}
        point = self.analysis.operating_point
        found = {}
        for index, (face, matches) in enumerate(zip(faces, self.candidates(faces, top_k=2))):
            other = next((m for m in matches if m.identity != utf8_path(owners[index])), None)
            if other is not None and point.pair(other.distance, (face.quality, None), (False, False)).answer == SAME:
                found[index] = (sources[index], other.identity, float(other.distance))
        return found

    def identify(self, image: ImageInput, top_k: int = 1) -> list:
        """The ``top_k`` nearest identities (:class:`~facesuite.gallery.Match`, nearest first) of the
        image's main face (the answer, by the one rule, is ``FaceAnalysis(gallery=...).get(image)[0].identity``).
        When the image is a processed copy of an enrolled photo, a ``match_kind="source"`` match
        of that photo's identity comes first (its distance is the face's to that identity)."""
        (face,) = self.analysis.get(image)
        matches = self.candidates([face], top_k)[0]
        answer = self.answer(face, matches[0])
        if answer.match_kind == "source":
            if all(m.identity != answer.identity for m in matches):
                # The photo's identity is not among the face's nearest: rank every identity once to
                # give the face's own distance to it (only when a source match fires).
                matches = self.candidates([face], len(self))[0]
            distance = next(m.distance for m in matches if m.identity == answer.identity)
            answer = Match(answer.identity, distance, answer.source, "source", answer.agreement)
            matches = [answer, *[m for m in matches if m.identity != answer.identity]][:top_k]
        return matches

    def answer(self, face: Face, best: Match, pixels: np.ndarray | None = None) -> Match:
        """Decide ``face`` given its nearest identity ``best`` by the one rule
        (:mod:`facesuite.decide`): sets its ``identity``, ``distance``, ``threshold``, ``held_to``,
        ``match_kind`` (and ``source_photo``, ``source_agreement``) and returns the match that
        answered. ``pixels``: the face's image, if already decoded.

        A processed copy of an enrolled photo is that photo's identity however little its face
        shows (a blown-out sunny face below the quality floor), reported as
        ``match_kind="source"``, as long as its box is judged to hold a face; only the main face of
        an image speaks for the whole frame."""
        found = None
        if face.index == 0 and not face.no_face and self.analysis.source_match and self.store.keeps_frames:
            if pixels is None and face._crop is not None:
                pixels = face._crop.pixels()
            if pixels is not None:
                from facesuite.gallery.source_match import face_blocks

                # A recognisable face is held to the source's face (another face pasted over an
                # enrolled photo keeps its frame); a blown-out one keeps too little detail to be.
                quality = None if face.quality is None else np.array([face.quality])
                held = face._crop is not None and self.operating_point.recognisable(quality, 1)[0]
                found = self.source_of(pixels, face_blocks(face._crop.face.box, pixels.shape) if held else None)
        decision = self.operating_point.search(best.identity, best.distance, face.distortion, face.quality, face.no_face,
                                               found.identity if found is not None else None)
        face.identity, face.threshold, face.held_to = decision.answer, decision.threshold, decision.held_to
        if found is None and face.no_face:
            return best  # no distance or match: nothing was compared
        face.distance = best.distance
        if found is None:
            face.match_kind = "face"
            return best
        face.match_kind, face.source_photo, face.source_agreement = "source", found.source, found.agreement
        # The face's distance to that identity is known only when it is also the nearest.
        return Match(found.identity, best.distance if best.identity == found.identity else float("inf"),
                     found.source, "source", found.agreement)

    def source_of(self, pixels: np.ndarray, face: np.ndarray | None = None):
        """The enrolled photo the image ``pixels`` (RGB) is a processed copy of
        (:class:`~facesuite.gallery.source_match.SourceMatch`), or None; always None with source
        matching off or in a store that keeps no frames. ``face``: the face's blocks
        (:func:`~facesuite.gallery.source_match.face_blocks`), held to the source's face."""
        if not self.analysis.source_match or not self.store.keeps_frames:
            return None
        from facesuite.gallery.source_match import SourceIndex, frame_from_bytes, frame_of

        stamp, rows = self.store.frames(since=self._sources_stamp)
        if rows is not None:
            self._sources = SourceIndex([frame_from_bytes(frame) for _, _, frame in rows],
                                        [identity for identity, _, _ in rows], [source for _, source, _ in rows])
            self._sources_stamp = stamp
        return self._sources.match(frame_of(pixels), face=face) if self._sources else None

    def candidates(self, faces: Sequence[Face], top_k: int = 1) -> list[list]:
        """The one gallery lookup: per face, its ``top_k`` nearest identities."""
        if not faces:
            return []
        return self.store.identify(np.stack([face.embedding for face in faces]), top_k=top_k)

    def remove(self, identity: str) -> int:
        return self.store.remove(identity)

    def list(self) -> list[tuple[str, int]]:
        """``(identity, faces)`` for every enrolled identity, sorted by name."""
        return self.store.identities()

    def __len__(self) -> int:
        return len(self.store)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
