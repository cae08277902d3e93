"""`facesuite batch` on the local engine: sources, Parquet rows, per-image errors, resuming.

The Ray engine runs the same worker; tests/test_ray_cluster.py checks it on a real cluster.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from facesuite.batch import (
    JobSpec,
    done_paths,
    list_images,
    ImageWorker,
    output_schema,
    read_output,
    rows_to_table,
    run_job,
)
from facesuite.cli import main
from facesuite.errors import InputError


@pytest.fixture(scope="module")
def images(samples: Path) -> list[Path]:
    """Eight real photos (the samples) of four people."""
    folders = sorted((samples / "people").iterdir())[:4]
    return [p for d in folders for p in sorted(d.glob("*.jpg"))[:2]]


FAULT_INJECTION = Path(__file__).parent / "fault_injection"


def write_list(path: Path, entries: list[object]) -> Path:
    path.write_text("".join(f"{entry}\n" for entry in entries))
    return path


def test_list_images_from_folder_and_list_file(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/2.jpg", "a/b/1.png", "a/notes.txt", "3.JPG", "a/.DS_Store"):
        (tmp_path / name).write_bytes(b"x")
    # Every file but hidden ones: the loader decides by content (notes.txt becomes an error row).
    assert list_images(tmp_path) == [str(tmp_path / n) for n in ("3.JPG", "a/2.jpg", "a/notes.txt", "a/b/1.png")]
    # Relative entries are relative to the list file; comments, blanks and repeats are dropped;
    # names that do not exist are kept, so the job records them as errors.
    listing = write_list(tmp_path / "a" / "list.txt", ["# photos", "2.jpg", "", "b/1.png", "./2.jpg", str(tmp_path / "gone.jpg")])
    assert list_images(listing) == [str(tmp_path / "a/2.jpg"), str(tmp_path / "a/b/1.png"), str(tmp_path / "gone.jpg")]
    with pytest.raises(InputError, match="no such folder or list file"):
        list_images(tmp_path / "nothing")
    with pytest.raises(InputError, match="no images found"):
        list_images(write_list(tmp_path / "empty.txt", ["# nothing"]))


def test_analyze_rows_match_the_analyzer_and_record_bad_images(tmp_path: Path, images: list[Path]) -> None:
    from facesuite.analysis import FaceAnalysis

    (tmp_path / "corrupt.jpg").write_bytes(b"not a jpeg")
    listing = write_list(tmp_path / "list.txt", [*images[:4], "corrupt.jpg", "missing.jpg"])
    # The job takes the default path (detection cache on), the analyzer below detects afresh: a
    # cached detection must give exactly what a fresh one gives.
    summary = run_job(JobSpec("analyze"), listing, tmp_path / "out")
    assert (summary.found, summary.processed, summary.errors, summary.already_done) == (6, 6, 2, 0)

    table = read_output(tmp_path / "out")
    assert table.schema.remove_metadata() == output_schema("analyze")
    rows = {row["path"]: row for row in table.to_pylist()}
    assert rows[str(tmp_path / "missing.jpg")]["error"] == "no such file"
    assert rows[str(tmp_path / "corrupt.jpg")]["error"] == "not an image file (format not recognised)"
    assert rows[str(tmp_path / "corrupt.jpg")]["embedding"] is None

    # The rows are exactly what the in-process FaceAnalysis says about the same images.
    expected, _ = FaceAnalysis(use_cache=False).faces(images[:4])
    for face in expected:
        row = rows[face.source]
        assert row["error"] is None
        assert (row["distortion"], row["route"], row["gender"], row["fallback"]) == (
            face.distortion, face.route, face.gender, face.fallback)
        np.testing.assert_allclose(row["box"], face.box, atol=1e-3)
        np.testing.assert_allclose(row["p_female"], face.p_female, atol=1e-5)
        np.testing.assert_allclose(row["embedding"], face.embedding, atol=1e-5)
        assert np.linalg.norm(row["embedding"]) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("kind", ["analyze", "embed"])
def test_rows_become_the_table_pyarrow_would_build(tmp_path: Path, images: list[Path], kind: str) -> None:
    """The worker's rows (faces, a fallback-free error row) through our NumPy-buffer conversion give
    exactly pyarrow's own ``Table.from_pylist``, which we avoid only because it imports pandas."""
    (tmp_path / "corrupt.jpg").write_bytes(b"not a jpeg")
    paths = [str(p) for p in images[:3]] + [str(tmp_path / "corrupt.jpg")]
    worker = ImageWorker(JobSpec(kind))
    rows = worker._rows(paths)
    table = worker.process(paths)
    table.validate(full=True)
    assert table.equals(pa.Table.from_pylist([rows[path] for path in paths], schema=output_schema(kind)))
    assert table.column("error").null_count == 3 and rows_to_table([], output_schema(kind)).num_rows == 0


def test_batch_embed_process_imports_only_what_it_uses(tmp_path: Path, images: list[Path]) -> None:
    """A `batch embed` run on this machine loads neither pandas (0.3 s: pyarrow imports it when it
    converts Python values or reads with read_table) nor PyTorch, FAISS or Ray."""
    code = ("import sys; from facesuite.cli import main; code = main(sys.argv[1:]); "
            "print(sorted(m for m in ('pandas', 'torch', 'faiss', 'ray', 'matplotlib') if m in sys.modules), file=sys.stderr); "
            "sys.exit(code)")
    listing = write_list(tmp_path / "list.txt", images[:2])
    for _ in range(2):  # the second run resumes: it reads the first run's output
        done = subprocess.run([sys.executable, "-c", code, "batch", "embed", str(listing), "--out", str(tmp_path / "out"),
                               "--workers", "1"], capture_output=True, text=True, check=True)
        assert done.stderr.strip().splitlines()[-1] == "[]", done.stderr
    assert read_output(tmp_path / "out").num_rows == 2


def test_rerun_skips_images_already_in_the_output(tmp_path: Path, images: list[Path]) -> None:
    spec = JobSpec("embed", routing=False)
    out = tmp_path / "out"
    first = run_job(spec, write_list(tmp_path / "half.txt", images[:3]), out)
    # A part left half-written by a crash is hidden and must not be read as output.
    (out / ".part-crashed-00000.parquet.tmp").write_bytes(b"PAR1 torn")
    second = run_job(spec, write_list(tmp_path / "all.txt", images), out)
    third = run_job(spec, tmp_path / "all.txt", out)
    assert (first.processed, second.processed, second.already_done, third.processed) == (3, 5, 3, 0)
    paths = read_output(out).column("path").to_pylist()
    assert sorted(paths) == sorted(str(p) for p in images) and len(set(paths)) == len(paths)


def test_output_of_another_job_is_refused(tmp_path: Path, images: list[Path]) -> None:
    listing = write_list(tmp_path / "list.txt", images[:1])
    run_job(JobSpec("embed", routing=False), listing, tmp_path / "out")
    with pytest.raises(InputError, match="different job"):
        run_job(JobSpec("embed", routing=True), listing, tmp_path / "out")
    with pytest.raises(InputError, match="different job"):
        done_paths(tmp_path / "out", JobSpec("analyze", routing=False))


def test_worker_processes_give_the_same_rows_as_one_process(tmp_path: Path, images: list[Path]) -> None:
    listing = write_list(tmp_path / "list.txt", images)
    spec = JobSpec("embed", routing=False, batch_size=3)  # three chunks over two processes
    run_job(spec, listing, tmp_path / "one", workers=1)
    run_job(spec, listing, tmp_path / "two", workers=2)
    one, two = read_output(tmp_path / "one"), read_output(tmp_path / "two")
    assert one.column("path").to_pylist() == two.column("path").to_pylist()
    assert one.column("fallback").to_pylist() == two.column("fallback").to_pylist()
    np.testing.assert_allclose(np.array(one.column("embedding").to_pylist()),
                               np.array(two.column("embedding").to_pylist()), atol=1e-5)


def test_a_fault_in_a_worker_stops_the_job_keeps_its_rows_and_a_rerun_finishes(tmp_path: Path, images: list[Path]) -> None:
    # A fault of ours inside a worker process (tests/fault_injection) is not bad input: the job
    # must stop with exit 1 and one line naming it, not record it as an error row and exit 0.
    listing, out = write_list(tmp_path / "list.txt", images), tmp_path / "out"
    command = [str(Path(sys.executable).parent / "facesuite"), "batch", "embed", str(listing), "--out", str(out),
               "--workers", "2", "--batch-size", "2"]  # four chunks; the fault is in the last
    faulty = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(FAULT_INJECTION), os.environ.get("PYTHONPATH")])),
              "FACESUITE_TEST_FAULT_ON": images[-1].name}
    first = subprocess.run(command, env=faulty, capture_output=True, text=True, timeout=300, check=False)
    assert first.returncode == 1, first.stdout + first.stderr
    (line,) = [entry for entry in first.stderr.splitlines() if entry.startswith("facesuite:")]
    assert line.startswith("facesuite: internal error") and "RuntimeError: injected fault" in line, first.stderr
    assert "the 6 rows finished before it are kept" in line and "Traceback" not in first.stderr
    log = Path(line.rsplit("full traceback in ", 1)[1])
    assert "Traceback" in log.read_text() and "injected fault" in log.read_text()
    kept = read_output(out)
    assert kept.column("path").to_pylist() == sorted(str(p) for p in images[:6])
    assert kept.column("error").null_count == kept.num_rows  # nothing recorded as a bad image

    second = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert second.returncode == 0, second.stderr
    assert "6 already done" in second.stdout and "embed: 2 images" in second.stdout
    done = read_output(out)
    assert done.column("path").to_pylist() == sorted(str(p) for p in images)
    assert done.column("error").null_count == len(images)


def test_cli_batch_embed_and_user_errors(tmp_path: Path, images: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    listing = write_list(tmp_path / "list.txt", images[:2])
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["batch", "embed", str(listing), "--out", str(tmp_path / "out"), "--workers", "1"]) == 0
    assert "embed: 2 images" in out.getvalue() and "on local" in out.getvalue()
    parts = list((tmp_path / "out").glob("part-*.parquet"))
    assert len(parts) == 1 and pq.read_table(parts[0]).num_rows == 2
    # The headline table counts what the output holds.
    found = sum(not fallback for fallback in pq.read_table(parts[0]).column("fallback").to_pylist())
    assert re.search(rf"face found\s+{found} of 2\b", out.getvalue()), out.getvalue()
    assert re.search(r"could not be read\s+0\b", out.getvalue()), out.getvalue()
    assert main(["batch", "embed", str(listing), "--out", str(tmp_path / "o2"), "--ray-address", "h:1"]) == 2
    assert "--ray-address needs --engine ray" in capsys.readouterr().err
    assert main(["batch", "analyze", str(tmp_path / "nope"), "--out", str(tmp_path / "o3")]) == 2
    assert main(["batch", "embed", str(listing), "--out", str(tmp_path / "o4"), "--embedder", "nope"]) == 2
    assert "unknown embedder 'nope'" in capsys.readouterr().err
    assert isinstance(pq.read_schema(parts[0]).field("embedding").type, pa.ListType)
