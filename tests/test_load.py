"""A reduced run of the load test (`benchmarks/load.py`, 2 clients x 20 requests) against a real
`facesuite serve` on loopback: no failed request, and the server's memory does not grow."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from facesuite.config import MODELS_DIR

LOAD = Path(__file__).resolve().parents[1] / "benchmarks" / "load.py"
CLIENTS, REQUESTS = 2, 20


@pytest.mark.skipif(not (MODELS_DIR / "distortion" / "weights.pt").is_file(), reason=f"shipped distortion model not in {MODELS_DIR}")
def test_reduced_load_has_no_errors_and_steady_memory(facecom_b: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(LOAD), "--clients", str(CLIENTS), "--requests", str(REQUESTS), "--warmup", "5",
         "--images", "20", "--max-seconds", "480", "--json"],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert run.stdout.strip(), run.stderr  # load.py exits with a message when the server fails
    figures = json.loads(run.stdout.strip().splitlines()[-1])
    assert figures["requests"] == CLIENTS * REQUESTS and figures["errors"] == 0, figures
    assert figures["rss_growth"] <= 0.10, figures
    assert 0 < figures["p50_ms"] <= figures["p95_ms"] <= figures["p99_ms"]
    assert run.returncode == 0, run.stderr
