"""The attribute stages of :class:`~facesuite.analysis.FaceAnalysis`: age and gender, each an object
that declares what it reads from the recognition pass and answers for a batch of faces.

One pass of the recognition network per face serves identity, presence, age and gender where the
heads were trained on its features: a stage says so (``reads_hidden``, ``reads_maps``) and gets
them in a :class:`SharedPass`; a head of another space runs a pass of its own network. Stages run
in order, each reading what the earlier ones set on a face (gender reads the age band for its
abstention floor). Adding an attribute is adding a stage to :attr:`FaceAnalysis.stages`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from facesuite.classify.age import AgeHead
from facesuite.classify.gender_head import DEFAULT_GENDER_DIR, LinearGenderHead, mirror_when_unsure
from facesuite.embed import ChipSpec, Embedder, get_embedder

if TYPE_CHECKING:
    from facesuite.analysis import Face


@dataclass(frozen=True)
class SharedPass:
    """One batch of faces after the recognition pass: the distortion predictions, the plain
    embeddings of the chips the pass read (restored, as routed), its hidden features when a stage
    asked for them, and the chips themselves."""

    size: int
    kinds: list
    plain: np.ndarray
    hidden: np.ndarray | None
    embedder: Embedder  # the recognition network
    restored: Callable[[Sequence[int]], list[np.ndarray]]  # the chips the pass read, of these rows
    cut: Callable[[ChipSpec, Sequence[int]], list[np.ndarray]]  # the faces of these rows, cut as spec says


class Stage(Protocol):
    reads_hidden: bool  # reads the recognition pass's hidden features
    reads_maps: bool  # ...with the last stage's input map

    def run(self, batch: SharedPass) -> Any: ...
    def apply(self, face: Face, answers: Any, row: int) -> None: ...


class AgeStage:
    """Age and its 80% interval, from the recognition pass when the head was trained on it, else
    from a pass of the head's own space (``passes``: the networks already run, reused when one is of
    that space)."""

    def __init__(self, head: AgeHead, recognition: Embedder, passes: Sequence[Embedder] = ()) -> None:
        self.head = head
        self.embedder = next((e for e in (recognition, *passes) if e.space == head.space and hasattr(e, "describe")), None) \
            or get_embedder(head.space)
        self.reads_hidden = self.embedder is recognition
        self.reads_maps = self.reads_hidden and head.reads_maps

    def run(self, batch: SharedPass) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        plain, hidden = batch.plain, batch.hidden
        if not self.reads_hidden:
            plain, hidden = self.embedder.describe(batch.cut(self.embedder.chip_spec, range(batch.size)), maps=self.head.reads_maps)
        return self.head.predict(plain, hidden)

    def apply(self, face: Face, answers: tuple[np.ndarray, np.ndarray, np.ndarray], row: int) -> None:
        age, low, high = answers
        face.age, face.age_range = float(age[row]), (float(low[row]), float(high[row]))


class GenderStage:
    """p(female) and the answer (``male``, ``female``, or ``uncertain`` below the model's confidence
    floor for the face's age band, with ``abstain``).

    A linear head (kinds ``embedding`` and ``backbone``) runs in NumPy on the recognition pass when
    it is of the head's space, else on a pass of a network of that space; faces it is unsure of are
    scored again mirrored. Other kinds run their own PyTorch network (``finetune`` on the
    recognition pass's trunk map when the float port computes it)."""

    def __init__(self, folder: str | Path, recognition: Embedder, abstain: bool = True) -> None:
        self.folder = Path(DEFAULT_GENDER_DIR if folder == "default" else folder)
        self.abstain = abstain
        self.head = LinearGenderHead.load(self.folder) if self.folder.is_dir() else None
        self._model = None
        if self.head is None:
            self._model = self._load_model()  # PyTorch: loaded, and checked, now
        kind = self.head.kind if self.head is not None else self._model.config.kind
        if self.head is not None and self.head.kind == "embedding":
            # dlib itself gives the port's vectors, the only features this kind reads.
            shares = recognition.space == self.head.space or {recognition.space, self.head.space} <= {"dlib", "dlib-torch"}
        elif self.head is not None:
            shares = recognition.space == self.head.space and hasattr(recognition, "describe")
        else:  # the fine-tuned branch runs on the float port's trunk map (either runtime)
            shares = kind == "finetune" and recognition.space == "dlib-torch" and hasattr(recognition, "describe")
        self.kind = kind
        self.reads_hidden = shares
        self.reads_maps = shares and (kind == "finetune" or (self.head is not None and self.head.reads_maps))
        # The network whose pass a linear head reads: the recognition pass, or one of its own space.
        self.embedder = None if self.head is None else recognition if shares else get_embedder(self.head.space)

    @property
    def model(self):
        """The PyTorch gender model (:class:`~facesuite.classify.gender.GenderModel`: standalone
        chips, Grad-CAM), loaded on first use when a NumPy head answers."""
        if self._model is None:
            self._model = self._load_model()
        return self._model

    def _load_model(self):
        from facesuite.classify.gender import GenderModel

        return GenderModel.load(self.folder)

    def run(self, batch: SharedPass) -> np.ndarray:
        head, rows = self.head, range(batch.size)
        if head is not None:
            if self.reads_hidden:
                chips = batch.restored  # the chips the recognition pass read
                p_female = head.p_female(batch.plain, batch.hidden)
            else:
                def chips(selected: Sequence[int]) -> list[np.ndarray]:
                    return batch.cut(self.embedder.chip_spec, selected)

                p_female = head.p_female_of_chips(self.embedder, chips(rows))
            # The same chip the head read, mirrored: one more pass, for the unsure faces only.
            return mirror_when_unsure(p_female, head.mirror_margin, lambda unsure: head.p_female_of_chips(
                self.embedder, [np.ascontiguousarray(chip[:, ::-1]) for chip in chips(unsure)]))
        if self.reads_hidden:
            import torch

            with torch.inference_mode():
                hidden = torch.from_numpy(batch.hidden) if batch.hidden is not None else None
                logits = self.model.network.head(torch.from_numpy(batch.plain), hidden)
                return torch.softmax(logits, dim=1)[:, 1].numpy()
        return self.model.p_female(batch.cut(self.model.chip_spec, rows))

    def apply(self, face: Face, p_female: np.ndarray, row: int) -> None:
        face.p_female = float(p_female[row])
        ages = None if face.age is None else np.array([face.age])
        face.gender = (self.head or self.model).labels_for(p_female[row : row + 1], self.abstain, ages)[0]
