"""Recognition evaluations over server-side folders, run in the background with live progress."""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facesuite.errors import InputError
from facesuite.serve.service import ApiError, ModelService

log = logging.getLogger("facesuite.serve")
# An evaluation is embedded in about this many slices, so the progress bar moves and dashboard
# requests get the model thread between slices instead of waiting for the whole evaluation.
EVAL_SLICES = 20

@dataclass
class Job:
    id: str
    folder: str
    out: Path
    state: str = "queued"  # queued -> running -> done | failed
    done: int = 0
    total: int = 0
    message: str = ""
    metrics: dict = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    finished: float | None = None

    def to_dict(self) -> dict:
        return {
            "id": self.id, "folder": self.folder, "state": self.state, "done": self.done, "total": self.total,
            "message": self.message, "metrics": self.metrics,
            "seconds": round((self.finished or time.time()) - self.started, 1),
            "report_url": f"/jobs/{self.id}/report" if self.state == "done" else None,
        }


class JobRunner:
    """Recognition evaluations over server-side folders, each on its own background thread."""

    def __init__(self, service: ModelService, work_dir: Path, roots: Sequence[Path]) -> None:
        self.service = service
        self.work_dir = work_dir
        # Folders (and split files) a client may name must resolve inside one of these.
        self.roots = [root.expanduser().resolve() for root in roots]
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def start(self, folder: str, split: str | None) -> Job:
        from facesuite.data import read_identity_folders, read_split
        from facesuite.evaluate.open_set import protocol_dataset

        # Validated here so a wrong folder is answered at once, not as a failed job.
        dataset = read_identity_folders(self._readable(folder))
        if split:
            dataset = dataset.subset(read_split(self._readable(split)) & set(dataset.identities))
        # The protocol `facesuite eval recognition` takes by default (cross for plain photos); it
        # refuses a gallery of fewer than two identities.
        dataset, _ = protocol_dataset(dataset, folder)
        job = Job(uuid.uuid4().hex[:12], folder, self.work_dir / "jobs")
        job.out = job.out / job.id
        with self._lock:
            self._jobs[job.id] = job
        threading.Thread(target=self._run, args=(job, dataset), name=f"eval-{job.id}", daemon=True).start()
        return job

    def _readable(self, name: str) -> Path:
        """``name`` resolved (symbolic links and ``..`` included) if it lies under a root, else 403."""
        path = Path(name).expanduser().resolve()
        if not any(path.is_relative_to(root) for root in self.roots):
            raise ApiError(403, f"{name}: outside the folders this server may read (see facesuite serve --eval-root)")
        return path

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise ApiError(404, f"no job {job_id!r}")
        return job

    def _run(self, job: Job, dataset) -> None:
        from facesuite.evaluate.recognition import (
            recognition_metrics,
            write_recognition_report,
        )

        try:
            identities = dataset.identities
            size = max(1, math.ceil(len(identities) / EVAL_SLICES))
            slices = [set(identities[i : i + size]) for i in range(0, len(identities), size)]
            job.total, job.state, job.message = len(dataset.clean) + len(dataset.distorted), "running", "embedding faces"
            parts = []
            for names in slices:
                subset = dataset.subset(names)
                parts.append(self.service.call(self.service.embed_slice, subset))
                job.done += len(subset.clean) + len(subset.distorted)
            data, skipped, routing = merge_embedded(parts)
            job.message = "computing metrics and plots"
            point = self.service.call(self.service.operating_point)
            metrics = recognition_metrics(data, point)
            metrics.update(pipeline="routed" if routing else "single", skipped=len(skipped))
            if routing:
                metrics["routing"] = routing
            write_recognition_report(job.out, data, metrics, f"Recognition: {job.folder}", point,
                                     chips=lambda paths: self.service.call(self.service.face_chips, paths))
            ident, verif, decided = metrics["identification"], metrics["verification"], metrics["open_set"]["overall"]
            job.metrics = {"top1": round(ident["top1"], 4), "auc": round(verif["auc"], 4),
                           "tar_at_far_1pct": round(verif["tar_at_far_1pct"], 4),
                           "coverage": round(decided["coverage"], 4), "fpir": round(decided["fpir"], 4),
                           "wrong_identity_rate": round(decided["wrong_identity_rate"], 4), "probes": ident["probes"],
                           "identities": ident["identities"], "skipped": len(skipped)}
            job.state, job.message = "done", "finished"
        except (InputError, ApiError) as error:
            job.state, job.message = "failed", str(error)
        except Exception:  # a bug: keep the server up, log the traceback, tell the page
            log.exception("evaluation job %s failed", job.id)
            job.state, job.message = "failed", "internal error (see the server log)"
        finally:
            job.finished = time.time()


def _offsets(sets: Sequence) -> list[int]:
    """Where each slice's gallery images start in the merged gallery."""
    return np.cumsum([0] + [len(s.gallery_ids) for s in sets[:-1]]).tolist()


def merge_embedded(parts: Sequence[tuple]) -> tuple:
    """Join the ``embed_dataset`` results of several slices into one (data, skipped, routing)."""
    from facesuite.evaluate.recognition import EmbeddedSet

    sets = [p[0] for p in parts]
    data = EmbeddedSet(
        gallery_paths=[x for s in sets for x in s.gallery_paths],
        gallery_ids=[x for s in sets for x in s.gallery_ids],
        gallery=np.concatenate([s.gallery for s in sets if len(s.gallery)]),
        probe_paths=[x for s in sets for x in s.probe_paths],
        probe_ids=[x for s in sets for x in s.probe_ids],
        probe_types=[x for s in sets for x in s.probe_types],
        probe_sources=[x for s in sets for x in s.probe_sources],
        probes=np.concatenate([s.probes for s in sets if len(s.probes)]),
        probe_labels=None if sets[0].probe_labels is None else [x for s in sets for x in s.probe_labels or []],
        probe_routes=None if sets[0].probe_routes is None else [x for s in sets for x in s.probe_routes or []],
        probe_features=None if sets[0].probe_features is None else np.concatenate([s.probe_features for s in sets]),
        probe_quality=None if sets[0].probe_quality is None else np.concatenate([s.probe_quality for s in sets]),
        probe_no_face=None if sets[0].probe_no_face is None else np.concatenate([s.probe_no_face for s in sets]),
        # Each slice searched its own gallery images: its rows move down by the slices before it.
        source_rows=None if sets[0].source_rows is None else np.concatenate(
            [np.where(s.source_rows >= 0, s.source_rows + offset, -1) for s, offset in zip(sets, _offsets(sets))]),
        source_agreement=None if sets[0].source_agreement is None else np.concatenate([s.source_agreement for s in sets]),
    )
    skipped = [x for p in parts for x in p[1]]
    routing: dict = {}
    routed = [(p[2], len(p[0].probe_paths)) for p in parts if p[2]]
    if routed:
        # Each slice reports its detector accuracy; weight by its probe count.
        counted = [(r["detector_accuracy"], n) for r, n in routed if r["detector_accuracy"] is not None]
        total = sum(n for _, n in counted)
        routing = {"detector_accuracy": sum(a * n for a, n in counted) / total if total else None,
                   "routes": {k: v for r, _ in routed for k, v in r["routes"].items()}}
    return data, skipped, routing
