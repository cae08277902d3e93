"""Latency of POST /analyze through a real server: `facesuite serve` on loopback, one request at a time.

    python benchmarks/api_latency.py [--requests 100] [--image FACE.jpg] [--max-seconds 120]

Prints p50/p95 in milliseconds. The first request is a warm-up (not counted); the detection cache
is off so every request pays for detection, as a new photo would.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from facesuite.config import data_root
from serve_process import free_port, wait_until_ready

SERVE = "import sys; from facesuite.cli import main; sys.exit(main())"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--max-seconds", type=float, default=120.0, help="stop early after this long")
    parser.add_argument("--image", help="face image (default: a FACECOM task_b image)")
    args = parser.parse_args()
    image = Path(args.image) if args.image else next(iter(sorted((data_root() / "facecom/task_b/train/Colin_Powell").glob("*.jpg"))), None)
    if image is None or not image.is_file():
        sys.exit("no face image: pass --image or set FACESUITE_DATA")
    payload = image.read_bytes()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as home:
        process = subprocess.Popen([sys.executable, "-c", SERVE, "serve", "--port", str(port), "--no-cache"],
                                   env=os.environ | {"FACESUITE_HOME": home}, stdout=subprocess.DEVNULL)
        try:
            if not wait_until_ready(url, process, timeout=120):
                sys.exit(f"server exited or was not ready in 120 s (exit code {process.poll()})")
            with httpx.Client(base_url=url, timeout=60) as client:
                files = {"image": (image.name, payload, "image/jpeg")}
                warm = client.post("/analyze", files=files)
                if warm.status_code != 200:
                    sys.exit(f"/analyze answered {warm.status_code}: {warm.text}")
                times = []
                stop = time.monotonic() + args.max_seconds
                while len(times) < args.requests and time.monotonic() < stop:
                    start = time.perf_counter()
                    response = client.post("/analyze", files=files)
                    times.append((time.perf_counter() - start) * 1000)
                    response.raise_for_status()
        finally:
            process.terminate()
            process.wait(timeout=20)
    p50, p95 = np.percentile(times, [50, 95])
    print(f"POST /analyze ({image.name}, {len(payload) / 1024:.0f} KB, {len(times)} requests): p50 {p50:.1f} ms, p95 {p95:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
