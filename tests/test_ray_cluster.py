"""A real two-node Ray cluster runs `facesuite batch analyze` with the default settings (detection
cache on, on both nodes) and matches the local engine row for row; a fault inside a Ray worker
stops the job with exit 1, keeps the rows finished before it, and a rerun finishes the job.

The cluster lives in private network and PID namespaces (``unshare``) that hold only loopback:
both nodes bind 127.0.0.1, Ray's start-up probes of outside addresses cannot leave the machine,
and every Ray process dies with the namespace even if the test is killed. ``ray stop`` shuts the
cluster down first, as an operator would.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facesuite.batch import JobSpec, read_output, run_job
from facesuite.detect import DetectorSettings

pytest.importorskip("ray", reason="ray not installed (see requirements.txt)")

# A few hundred images: both nodes get several batches; the test stays within about two minutes.
IMAGES = 200
BIN = Path(sys.executable).parent
NAMESPACES = ["unshare", "--net", "--pid", "--fork", "--mount-proc"]
# Per-command limits: generous for a loaded CI machine, yet the test always ends.
START_TIMEOUT_S = 90
JOB_TIMEOUT_S = 240

CLUSTER_SCRIPT = """
set -eu
ip link set lo up
ray="$BIN/ray"
trap '"$ray" stop --force >/dev/null 2>&1 || true' EXIT
export PYTHONPATH="$FAULTS${{PYTHONPATH:+:$PYTHONPATH}}" FACESUITE_TEST_FAULT_ON=fault-trigger.jpg FACESUITE_TEST_FAULT_ONCE="$RAY_TMP/fault-fired"
timeout {start} "$ray" start --head --node-ip-address 127.0.0.1 --port 6379 --num-cpus 1 \\
    --object-store-memory 100000000 --temp-dir "$RAY_TMP" --disable-usage-stats --include-dashboard false >/dev/null
timeout {start} "$ray" start --address 127.0.0.1:6379 --node-ip-address 127.0.0.1 --num-cpus 1 \\
    --object-store-memory 100000000 --temp-dir "$RAY_TMP" >/dev/null
timeout {job} "$BIN/facesuite" batch analyze "$SRC" --out "$OUT" --engine ray --ray-address 127.0.0.1:6379
# The workers fail once on the batch holding fault-trigger.jpg (tests/fault_injection): the first
# run must stop non-zero, the second must finish the job.
for run in 1 2; do
  status=0
  timeout {job} "$BIN/facesuite" batch embed "$FAULT_SRC" --out "$FAULT_OUT" --engine ray --ray-address 127.0.0.1:6379 \
      >"$RAY_TMP/fault-run-$run.out" 2>"$RAY_TMP/fault-run-$run.err" || status=$?
  echo "fault run $run: exit $status"
done
"$ray" stop
"""


def namespace_problem() -> str | None:
    """Why a private loopback-only network namespace cannot be made here, or None."""
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "needs `unshare` (util-linux) and `ip` (iproute2)"
    probe = subprocess.run([*NAMESPACES, "ip", "link", "set", "lo", "up"], capture_output=True, text=True, timeout=30,
                           check=False)
    if probe.returncode != 0:
        return f"cannot create network namespaces here (root or user namespaces needed): {probe.stderr.strip()}"
    return None


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory, facecom_b: Path) -> Path:
    """A list file: a few hundred real FACECOM images plus a corrupt file and a missing one."""
    folder = tmp_path_factory.mktemp("sample")
    images = sorted(p for p in facecom_b.resolve().glob("*/*.jpg"))[:IMAGES]
    if len(images) < IMAGES:
        pytest.skip(f"needs {IMAGES} FACECOM images, found {len(images)}")
    (folder / "corrupt.jpg").write_bytes(b"not a jpeg")
    lines = [str(p) for p in images] + [str(folder / "corrupt.jpg"), str(folder / "missing.jpg")]
    (folder / "images.txt").write_text("\n".join(lines) + "\n")
    # For the fault run: 64 images and, last, a copy of another one named to trigger the fault.
    shutil.copyfile(images[64], folder / "fault-trigger.jpg")
    (folder / "fault.txt").write_text("\n".join([*map(str, images[:64]), str(folder / "fault-trigger.jpg")]) + "\n")
    return folder / "images.txt"


def test_two_node_ray_cluster_matches_local_engine(tmp_path_factory: pytest.TempPathFactory, sample: Path) -> None:
    problem = namespace_problem()
    if problem:
        pytest.skip(problem)
    work = tmp_path_factory.mktemp("ray")  # short: Ray's socket paths under it must fit 107 bytes
    ray_out, local_out = work / "ray-out", work / "local-out"
    # Token authentication as a real cluster should run it, with a token of this test's own: Ray
    # otherwise decides from ~/.ray/auth_token, which earlier local Ray runs may have left.
    fault_out = work / "fault-out"
    env = {**os.environ, "BIN": str(BIN), "RAY_TMP": str(work / "tmp"), "SRC": str(sample), "OUT": str(ray_out),
           "FAULTS": str(Path(__file__).parent / "fault_injection"), "FAULT_SRC": str(sample.parent / "fault.txt"),
           "FAULT_OUT": str(fault_out),
           "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    script = CLUSTER_SCRIPT.format(start=START_TIMEOUT_S, job=JOB_TIMEOUT_S)
    cluster = subprocess.run([*NAMESPACES, "bash", "-c", script], env=env, capture_output=True, text=True, check=False,
                             timeout=2 * START_TIMEOUT_S + 3 * JOB_TIMEOUT_S + 60)
    assert cluster.returncode == 0, cluster.stdout[-3000:] + cluster.stderr[-5000:]

    # Both nodes did part of the work, and `ray stop` shut the cluster down.
    nodes = re.search(r"\((\d+) nodes: (.*?) rows\)", cluster.stdout)
    assert nodes and nodes.group(1) == "2", cluster.stdout
    per_node = [int(entry.split()[1]) for entry in nodes.group(2).split(", ")]
    assert all(rows > 0 for rows in per_node) and sum(per_node) == IMAGES + 2
    assert "Stopped" in cluster.stderr + cluster.stdout

    # The fault: exit 1 and one line naming it; the rows finished before it kept; the rerun does the rest.
    assert "fault run 1: exit 1" in cluster.stdout and "fault run 2: exit 0" in cluster.stdout, cluster.stdout
    fault_err = (work / "tmp" / "fault-run-1.err").read_text()
    (line,) = [entry for entry in fault_err.splitlines() if entry.startswith("facesuite:")]
    assert "internal error" in line and "injected fault" in line and "full traceback in" in line, fault_err
    kept = int(re.search(r"the (\d+) rows finished before it are kept", line).group(1))
    rerun = (work / "tmp" / "fault-run-2.out").read_text()
    assert f"{kept} already done" in rerun and f"embed: {65 - kept} images" in rerun, rerun
    finished = read_output(fault_out)
    assert finished.num_rows == 65 and finished.column("error").null_count == 65

    # The local engine with the same default settings (its detections now come from the cache
    # both nodes filled) gives the same rows.
    spec = JobSpec("analyze", detector=DetectorSettings())
    summary = run_job(spec, sample, local_out, engine="local", workers=2)
    assert (summary.processed, summary.errors) == (IMAGES + 2, 2)

    ray_rows, local_rows = read_output(ray_out), read_output(local_out)
    assert ray_rows.schema == local_rows.schema
    assert ray_rows.num_rows == local_rows.num_rows == IMAGES + 2
    for column in ("path", "error", "fallback", "distortion", "route", "gender"):
        assert ray_rows.column(column).to_pylist() == local_rows.column(column).to_pylist(), column
    for column in ("score", "distortion_probability", "p_female"):
        np.testing.assert_allclose(*(np.array(t.column(column).to_pylist(), dtype=float) for t in (ray_rows, local_rows)),
                                   atol=1e-5, err_msg=column)
    ok = [error is None for error in local_rows.column("error").to_pylist()]
    for column in ("box", "embedding"):
        ray_values, local_values = (np.array([v for v, good in zip(t.column(column).to_pylist(), ok) if good])
                                    for t in (ray_rows, local_rows))
        np.testing.assert_allclose(ray_values, local_values, atol=1e-4, err_msg=column)
    errors = dict(zip(local_rows.column("path").to_pylist(), local_rows.column("error").to_pylist()))
    assert errors[str(sample.parent / "missing.jpg")] == "no such file"
    assert errors[str(sample.parent / "corrupt.jpg")] == "not an image file (format not recognised)"
