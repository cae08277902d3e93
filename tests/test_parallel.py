"""Batches side by side (facesuite.parallel): the same answers, in input order, as one at a time;
a fault in one batch stops the run; a batch's own inner batches do not wait on the pool."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from facesuite import FaceAnalysis
from facesuite.parallel import ordered_map


@pytest.fixture(scope="module")
def app() -> FaceAnalysis:
    return FaceAnalysis(use_cache=False)


def _images(facecom_b: Path, count: int) -> list[Path]:
    # Clean and distorted photos, so the batches take different routes.
    people = sorted(p for p in facecom_b.iterdir() if p.is_dir())
    paths = [path for person in people for path in sorted(person.rglob("*.jpg"))[:3]]
    return paths[:count]


def test_routed_analysis_in_parallel_batches_equals_one_thread(app: FaceAnalysis, facecom_b: Path, monkeypatch) -> None:
    paths = _images(facecom_b, 40)  # three extraction batches
    workers: set[str] = set()
    route = app._route_part

    def recording(*args, **kwargs):
        workers.add(threading.current_thread().name)
        return route(*args, **kwargs)

    monkeypatch.setattr(app, "_route_part", recording)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    parallel = app.get_batch(paths)
    assert len(workers) == 2, workers  # the batches did run on two threads
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    serial = app.get_batch(paths)
    assert [faces[0].source for faces in parallel] == [str(p) for p in paths]
    for a, b in zip(parallel, serial):
        assert (a[0].distortion, a[0].route, a[0].gender) == (b[0].distortion, b[0].route, b[0].gender)
        np.testing.assert_allclose(a[0].embedding, b[0].embedding, atol=1e-6)
        np.testing.assert_allclose(a[0].landmarks, b[0].landmarks, atol=1e-6)


def test_a_fault_in_one_batch_is_raised_and_the_queued_batches_are_dropped(monkeypatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    done: list[int] = []

    def work(item: int) -> int:
        if item == 2:
            raise RuntimeError("fault in batch 2")
        done.append(item)
        return item

    results = []
    with pytest.raises(RuntimeError, match="fault in batch 2"):
        for result in ordered_map(work, list(range(40))):
            results.append(result)
    assert results == [0, 1]
    assert len(done) < 38  # at most the batches already in flight ran


def test_inner_batches_of_a_batch_run_inline(monkeypatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    # Every pool thread busy with an outer item that maps inner items: waiting on the pool would hang.
    outer = ordered_map(lambda i: sum(ordered_map(lambda j: i * j, list(range(5)))), list(range(8)))
    assert list(outer) == [10 * i for i in range(8)]
