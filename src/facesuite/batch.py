"""Batch jobs: analyse or embed a folder of images into a Parquet dataset, here or on Ray.

    spec = JobSpec("analyze")                       # or "embed"; embedder, detector, routing...
    summary = run_job(spec, "photos/", "faces.parquet", engine="ray", ray_address="head:6379")

Both engines run the same :class:`ImageWorker` (one :class:`~facesuite.analysis.FaceAnalysis`,
loaded once per worker) over batches of paths:

``local``
    one worker process per core of this machine;
``ray``
    Ray Data ``map_batches`` over an actor pool (one actor per CPU of the cluster), on a cluster
    given by address or on a Ray instance started here.

The output folder holds ``part-*.parquet`` files with one row per image: its main face's
``box``, ``fallback``, ``score``, ``embedding`` (and, for ``analyze``, ``distortion``,
``distortion_probability``, ``route``, ``gender``, ``p_female``, ``age``, ``age_range``), or an ``error`` naming why the
image could not be read. Parts are written whole under a hidden name and renamed into place, so
an interrupted job leaves only complete files; rerunning it skips every image already there.

Long because the row contract (schema, worker, Parquet parts, resuming) and the two engines that
honour it are one argument, read together.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from facesuite.config import DEFAULT_BATCH_SIZE
from facesuite.detect import DetectorSettings
from facesuite.errors import Fault, InputError, ModelIntegrityError, describe_fault, require
from facesuite.io import iter_images
from facesuite.parallel import ordered_map
from facesuite.text import ESCAPE, utf8_path

KINDS = ("analyze", "embed")
ENGINES = ("local", "ray")
# Rows per Parquet part: at most this much finished work is redone after a crash.
ROWS_PER_PART = 1024
METADATA_KEY = b"facesuite.job"

_FACE_COLUMNS = [
    ("box", pa.list_(pa.float32(), 4)),
    ("fallback", pa.bool_()),
    ("score", pa.float32()),
]
_ANALYSIS_COLUMNS = [
    ("no_face", pa.bool_()),
    ("distortion", pa.string()),
    ("distortion_probability", pa.float32()),
    ("route", pa.string()),
    ("gender", pa.string()),
    ("p_female", pa.float32()),
    ("age", pa.float32()),
    ("age_range", pa.list_(pa.float32(), 2)),
]


def output_schema(kind: str) -> pa.Schema:
    """Columns of a ``kind`` job's rows, in order."""
    extra = _ANALYSIS_COLUMNS if kind == "analyze" else []
    return pa.schema(
        [("path", pa.string()), ("error", pa.string()), *_FACE_COLUMNS, *extra, ("embedding", pa.list_(pa.float32()))]
    )


@dataclass(frozen=True)
class JobSpec:
    """What a job computes; everything here travels to the workers, so it stays picklable."""

    kind: str
    embedder: str = "default"
    detector: DetectorSettings = field(default_factory=DetectorSettings)
    routing: bool = True
    use_cache: bool = True
    batch_size: int = DEFAULT_BATCH_SIZE

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.batch_size < 1:
            raise InputError(f"--batch-size must be at least 1, got {self.batch_size}")

    def fingerprint(self) -> dict:
        """The settings that change the output; rows of one dataset must all share them."""
        from facesuite.embed import DEFAULT_EMBEDDER

        detector = asdict(self.detector)
        return {
            "kind": self.kind,
            "embedder": DEFAULT_EMBEDDER if self.embedder == "default" else self.embedder,
            "routing": self.routing,
            "detector": json.loads(json.dumps(detector)),  # tuples as lists, as read back
        }


@dataclass
class JobSummary:
    found: int  # images in the source
    already_done: int  # of those, already in the output before this run
    processed: int  # rows written by this run
    errors: int  # of those, images that could not be read
    seconds: float
    nodes: dict[str, int] | None = None  # Ray: rows per node id

    @property
    def images_per_second(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0


class ImageWorker:
    """Loads the models of a job once and turns batches of image paths into output rows.

    Called by Ray Data with ``{"paths": [chunk, ...]}`` batches, and by the local engine directly.
    """

    def __init__(self, spec: JobSpec) -> None:
        from facesuite.analysis import FaceAnalysis

        self.spec = spec
        self.schema = output_schema(spec.kind)
        self._analysis = FaceAnalysis(spec.embedder, spec.detector, use_cache=spec.use_cache,
                                      routes="default" if spec.routing else None,
                                      gender="default" if spec.kind == "analyze" else None,
                                      age="default" if spec.kind == "analyze" else None, batch_size=spec.batch_size)

    def __call__(self, batch: dict) -> pa.Table:
        # Ray Data hands over a batch of chunks (see _run_ray); each chunk is processed whole.
        return pa.concat_tables([self.process([str(path) for path in chunk]) for chunk in batch["paths"]])

    def process(self, paths: Sequence[str]) -> pa.Table:
        """One row per path, in order; an image that cannot be read is a row with ``error`` set.

        Only bad input becomes an error row. Any other exception is a fault of ours and propagates:
        recording it as if the image were bad would hide it behind an exit status of 0.
        """
        rows = self._rows(paths)
        return rows_to_table([rows[path] for path in paths], self.schema)

    def _rows(self, paths: Sequence[str]) -> dict[str, dict]:
        rows: dict[str, dict] = {}
        if self.spec.kind == "analyze":
            faces, skipped = self._analysis.faces(list(paths))
            for face in faces:
                rows[face.source] = {"path": face.source, "box": list(face.box), "fallback": face.fallback,
                                     "score": face.det_score, "no_face": face.no_face, "distortion": face.distortion,
                                     "distortion_probability": face.distortion_probability, "route": face.route,
                                     "gender": face.gender, "p_female": face.p_female, "age": face.age,
                                     "age_range": None if face.age_range is None else list(face.age_range),
                                     "embedding": face.embedding.tolist()}
        else:
            vectors, crops, skipped = self._analysis.embed(list(paths))
            for crop, vector in zip(crops, vectors):
                face = crop.input_face
                rows[str(crop.path)] = {"path": str(crop.path), "box": list(face.box), "fallback": face.fallback,
                                        "score": face.score, "embedding": vector.tolist()}
        for item in skipped:
            path = str(item.path)
            rows[path] = {"path": path, "error": item.error.message}
        return rows


class _RayImageWorker(ImageWorker):
    """The worker as a Ray actor: also tags its rows with its node, so the driver can report it."""

    def __init__(self, spec: JobSpec) -> None:
        import ray

        super().__init__(spec)
        self._node = ray.get_runtime_context().get_node_id()

    def __call__(self, batch: dict) -> pa.Table:
        table = super().__call__(batch)
        return table.append_column("node", pa.array([self._node] * table.num_rows, pa.string()))


# ---------------------------------------------------------------------- sources and outputs


def rows_to_table(rows: Sequence[dict], schema: pa.Schema) -> pa.Table:
    """What ``pa.Table.from_pylist(rows, schema=schema)`` gives (a missing key is a null), for the
    column types of :func:`output_schema`, built from NumPy buffers. pyarrow's own conversion of
    Python values imports pandas on first use (it checks every input for pandas objects): 0.3 s
    of each ``batch`` process, spent on a library it never uses here. Parquet strings are UTF-8:
    a file name that is not is stored as :func:`facesuite.text.utf8_path` writes it."""
    return pa.Table.from_arrays([_column([row.get(field.name) for row in rows], field.type)
                                 for field in schema], schema=schema)


def _column(values: list, kind: pa.DataType) -> pa.Array:
    present = np.array([value is not None for value in values], dtype=bool)
    nulls = len(values) - int(present.sum())
    validity = pa.py_buffer(np.packbits(present, bitorder="little")) if nulls else None
    if pa.types.is_string(kind):
        encoded = [value.encode("utf-8", ESCAPE) if value is not None else b"" for value in values]
        offsets = np.concatenate([[0], np.cumsum([len(item) for item in encoded])]).astype(np.int32)
        buffers = [validity, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))]
        return pa.Array.from_buffers(kind, len(values), buffers, null_count=nulls)
    if pa.types.is_boolean(kind):
        bits = np.packbits(np.array([bool(value) for value in values], dtype=bool), bitorder="little")
        return pa.Array.from_buffers(kind, len(values), [validity, pa.py_buffer(bits)], null_count=nulls)
    if kind == pa.float32():
        floats = np.array([0.0 if value is None else value for value in values], dtype=np.float32)
        return pa.Array.from_buffers(kind, len(values), [validity, pa.py_buffer(floats)], null_count=nulls)
    if pa.types.is_fixed_size_list(kind):
        padding = [None] * kind.list_size  # a null row still holds list_size (null) items
        items = _column([item for value in values for item in (padding if value is None else value)], kind.value_type)
        return pa.Array.from_buffers(kind, len(values), [validity], null_count=nulls, children=[items])
    if pa.types.is_list(kind):
        lengths = [0 if value is None else len(value) for value in values]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
        items = _column([item for value in values if value is not None for item in value], kind.value_type)
        return pa.Array.from_buffers(kind, len(values), [validity, pa.py_buffer(offsets)], null_count=nulls, children=[items])
    raise TypeError(f"no conversion for column type {kind}")


def list_images(source: str | Path) -> list[str]:
    """Absolute image paths of a folder (recursive, sorted) or of a list file (one per line).

    In a list file blank lines and lines starting with ``#`` are ignored, and relative paths are
    relative to the list file. Paths are made absolute so workers on other machines (sharing the
    storage) and later runs resolve them the same way.
    """
    source = Path(source)
    if source.is_dir():
        paths = [path.absolute() for path in iter_images(source)]
    elif source.is_file():
        try:
            lines = source.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read list file ({exc})", source) from None
        entries = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        paths = [(source.parent / entry).absolute() for entry in entries]
    else:
        raise InputError("no such folder or list file", source)
    if not paths:
        raise InputError("no images found", source)
    # The same image named twice would be processed twice and written twice.
    return list(dict.fromkeys(os.path.normpath(path) for path in paths))


def done_paths(out: Path, spec: JobSpec) -> set[str]:
    """Paths already in the dataset at ``out``; :class:`InputError` if it holds another job."""
    parts = sorted(out.glob("part-*.parquet")) if out.is_dir() else []
    if out.exists() and not out.is_dir():
        raise InputError("output must be a folder (a Parquet dataset)", out)
    done: set[str] = set()
    for part in parts:
        try:
            meta = pq.read_schema(part).metadata or {}
            job = json.loads(meta.get(METADATA_KEY, b"{}"))
            if job != spec.fingerprint():
                raise InputError(
                    f"holds a different job ({_describe(job)}); this one is {_describe(spec.fingerprint())}: "
                    "use another --out", out,
                )
            with pq.ParquetFile(part) as parquet:  # pq.read_table would import pandas (0.3 s)
                done.update(parquet.read(columns=["path"]).column("path").to_pylist())
        except (OSError, pa.ArrowException, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read existing output part ({exc})", part) from None
    return done


def _describe(job: dict) -> str:
    return f"{job.get('kind')} with embedder {job.get('embedder')}, routing {job.get('routing')}"


class PartWriter:
    """Appends rows to a Parquet dataset folder as whole part files renamed into place."""

    def __init__(self, out: Path, spec: JobSpec, rows_per_part: int = ROWS_PER_PART) -> None:
        self.out = out
        self.schema = output_schema(spec.kind).with_metadata({METADATA_KEY: json.dumps(spec.fingerprint())})
        self.rows_per_part = rows_per_part
        # A name unique to this run, so parts of several runs (or concurrent ones) never collide.
        self._run = f"{time.strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(3)}"
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._parts = 0
        self.rows = 0
        self.errors = 0

    def add(self, table: pa.Table) -> None:
        table = table.select(self.schema.names).cast(self.schema)
        self._pending.append(table)
        self._pending_rows += table.num_rows
        self.errors += table.num_rows - table.column("error").null_count
        if self._pending_rows >= self.rows_per_part:
            self.flush()

    def flush(self) -> None:
        if not self._pending_rows:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        name = f"part-{self._run}-{self._parts:05d}.parquet"
        # Hidden while incomplete: Parquet readers and done_paths() skip names starting with ".".
        temporary = self.out / f".{name}.tmp"
        pq.write_table(pa.concat_tables(self._pending), temporary)
        os.replace(temporary, self.out / name)
        self._parts += 1
        self.rows += self._pending_rows
        self._pending, self._pending_rows = [], 0


def read_output(out: str | Path) -> pa.Table:
    """The whole dataset at ``out`` as one table, sorted by path (row order depends on timing)."""
    parts = sorted(Path(out).glob("part-*.parquet"))
    if not parts:
        raise InputError("no batch output here", out)
    return pa.concat_tables([pq.read_table(part) for part in parts]).sort_by("path")


# ---------------------------------------------------------------------- engines


def run_job(
    spec: JobSpec,
    source: str | Path,
    out: str | Path,
    engine: str = "local",
    ray_address: str | None = None,
    workers: int | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> JobSummary:
    """Process every image of ``source`` not yet in ``out`` and append the rows to ``out``.

    ``workers``: local processes (default: this machine's cores) or Ray actors (default: one
    per CPU of the cluster).
    """
    if engine not in ENGINES:
        raise InputError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
    if workers is not None and workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    if ray_address and engine != "ray":
        raise InputError("--ray-address needs --engine ray")
    if engine == "ray":
        require("ray")  # before any work, not as a fault of the job
    _check_embedder(spec.embedder)
    out = Path(out)
    paths = list_images(source)
    done = done_paths(out, spec)
    todo = [path for path in paths if utf8_path(path) not in done]  # the form the rows store
    log(f"{len(paths)} images, {len(paths) - len(todo)} already in {out}, {len(todo)} to do")
    writer = PartWriter(out, spec)
    nodes: Counter[str] | None = Counter() if engine == "ray" else None
    started = time.perf_counter()
    if todo:
        tables = _run_local(spec, todo, workers) if engine == "local" else _run_ray(spec, todo, ray_address, workers, log)
        try:
            for table in tables:
                if nodes is not None:
                    nodes.update(table.column("node").to_pylist())
                writer.add(table)
        except (InputError, ModelIntegrityError, KeyboardInterrupt):
            raise
        except Exception as error:
            writer.flush()
            raise Fault(f"{spec.kind} job stopped: {describe_fault(error)}; the {writer.rows} rows finished before it "
                        f"are kept in {out}, and rerunning the same command resumes from there") from error
        finally:
            writer.flush()  # keep what is finished even when the job is interrupted
    return JobSummary(len(paths), len(paths) - len(todo), writer.rows, writer.errors,
                      time.perf_counter() - started, dict(nodes) if nodes is not None else None)


def _check_embedder(name: str) -> None:
    from facesuite.embed import EMBEDDERS

    # Checked here, where it is one line for the user, not inside every remote worker.
    if name != "default" and name not in EMBEDDERS:
        raise InputError(f"unknown embedder {name!r}; choose from {', '.join(EMBEDDERS.list())}")


def _chunks(paths: Sequence[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(paths), size):
        yield list(paths[start : start + size])


_worker: ImageWorker | None = None


def _start_process(spec: JobSpec, threads: int) -> None:
    global _worker
    # Several processes each running a full set of threads fight over the same cores. ONNX Runtime
    # sessions size their pools from OMP_NUM_THREADS (facesuite.config.inference_threads).
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    _worker = ImageWorker(spec)


def _process_chunk(paths: list[str]) -> pa.Table:
    return _worker.process(paths)


def _run_local(spec: JobSpec, paths: Sequence[str], workers: int | None) -> Iterable[pa.Table]:
    cores = os.cpu_count() or 1
    workers = min(workers or cores, math.ceil(len(paths) / spec.batch_size))
    if workers == 1:
        # Chunks side by side on this process's cores (each chunk's own batches then run inline):
        # no core waits at the end of a chunk for the other's last batch.
        worker = ImageWorker(spec)
        return ordered_map(worker.process, list(_chunks(paths, spec.batch_size)))
    return _pool_results(spec, paths, workers, max(1, cores // workers))


def _pool_results(spec: JobSpec, paths: Sequence[str], workers: int, threads: int) -> Iterator[pa.Table]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn, not fork: forking a process that has started torch's thread pools can deadlock.
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_process, initargs=(spec, threads))
    try:
        yield from pool.map(_process_chunk, _chunks(paths, spec.batch_size))
    finally:
        # On an interrupt, drop the queued batches instead of finishing them all first.
        pool.shutdown(cancel_futures=True)


def _run_ray(
    spec: JobSpec, paths: Sequence[str], address: str | None, workers: int | None, log: Callable[[str], None]
) -> Iterator[pa.Table]:
    import logging

    # Set before Ray is imported: a Ray started here must not report usage to anyone.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    import ray.data

    if address:
        try:
            ray.init(address=address, logging_level=logging.WARNING)
        except ConnectionError as exc:
            raise InputError(f"cannot join the Ray cluster ({exc})", address) from None
    else:
        ray.init(include_dashboard=False, logging_level=logging.WARNING)
    try:
        # Ray Data logs every stage at INFO; the CLI prints its own summary.
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        actors = min(workers or cpus, math.ceil(len(paths) / spec.batch_size))
        nodes = sum(1 for node in ray.nodes() if node["Alive"])
        log(f"ray: {actors} workers on a cluster of {nodes} nodes, {cpus} CPUs")
        # One item per chunk of batch_size paths, the local engine's chunks: models see the same
        # batches on both engines, so the outputs agree row for row. from_items keeps the items in
        # the object store; reading them needs no task, so every CPU can go to the actors (a read
        # task waiting for a CPU would stall the job).
        chunks = [{"paths": chunk} for chunk in _chunks(paths, spec.batch_size)]
        dataset = ray.data.from_items(chunks, override_num_blocks=len(chunks))
        results = dataset.map_batches(
            _RayImageWorker, fn_constructor_args=(spec,), batch_size=1, batch_format="numpy",
            # Two batches in flight per actor: one computing, one arriving. More would let the
            # first actor to finish loading its models take batches the others are ready for.
            compute=ray.data.ActorPoolStrategy(size=actors, max_tasks_in_flight_per_actor=2), num_cpus=1,
        )
        try:
            yield from results.iter_batches(batch_size=None, batch_format="pyarrow")
        except ray.exceptions.RayTaskError as error:
            raise Fault(f"{_remote_exception(str(error))} (in a Ray worker)") from error
    finally:
        ray.shutdown()


def _remote_exception(text: str) -> str:
    """The original ``Type: message`` line in the remote traceback Ray sends back as text (the
    exception object itself does not cross the process boundary)."""
    import re

    for line in text.splitlines():
        found = re.match(r"^([A-Za-z_][\w.]*(?:Error|Exception|Fault)): (.*)$", line.strip())
        if found and not found.group(1).startswith("ray."):
            return f"{found.group(1).rsplit('.', 1)[-1]}: {found.group(2)}"[:300]
    return text.strip().splitlines()[-1][:300] if text.strip() else "a Ray worker failed"
