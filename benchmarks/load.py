"""Bounded load test of `facesuite serve` on loopback: C clients x R requests of POST /analyze.

    python benchmarks/load.py                                # 4 clients x 250 requests
    python benchmarks/load.py --clients 2 --requests 20      # the size run in CI (tests/test_load.py)

Starts the server on a free loopback port (its own FACESUITE_HOME, detection cache off so every
request pays for detection), waits for the models, warms up with the same number of clients,
reads the server's RSS, runs the clients over distinct FACECOM faces, reads the RSS again, and
prints p50/p95/p99 latency, throughput, errors and memory. Stops by itself: after the requests,
or at --max-seconds. Exit status 1 on any failed request or when the RSS after the run is more
than --max-growth (10%) above the RSS after warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from facesuite.config import data_root
from serve_process import free_port, wait_until_ready

SERVE = "import sys; from facesuite.cli import main; sys.exit(main())"


@dataclass
class Phase:
    """Latencies (ms) and failures of one phase, filled by the client threads."""

    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def rss_mb(pid: int) -> float:
    """Resident set size of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def face_images(count: int) -> list[Path]:
    """``count`` clean FACECOM faces, spread over identities (sorted, so every run is the same)."""
    root = data_root() / "facecom" / "task_b" / "train"
    images = sorted(p for p in root.glob("*/*.jpg"))[:: 7][:count]
    if not images:
        raise SystemExit(f"no FACECOM images under {root} (set FACESUITE_DATA)")
    return images


def run_phase(url: str, payloads: list[tuple[str, bytes]], clients: int, per_client: int, deadline: float) -> Phase:
    phase = Phase()

    def client(index: int) -> None:
        with httpx.Client(base_url=url, timeout=120) as session:
            for i in range(per_client):
                if time.monotonic() > deadline:
                    return
                name, data = payloads[(index * per_client + i) % len(payloads)]
                start = time.perf_counter()
                try:
                    response = session.post("/analyze", files={"image": (name, data, "image/jpeg")})
                    failure = None if response.status_code == 200 else f"{response.status_code}: {response.text[:200]}"
                except httpx.HTTPError as error:
                    failure = f"{type(error).__name__}: {error}"
                elapsed = (time.perf_counter() - start) * 1000
                with phase.lock:
                    (phase.errors if failure else phase.latencies).append(failure or elapsed)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return phase


def load_test(clients: int, requests: int, warmup: int, images: int, max_seconds: float) -> dict:
    """Run the whole test against a fresh server; returns the figures as a dict."""
    payloads = [(p.name, p.read_bytes()) for p in face_images(images)]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as home, tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen([sys.executable, "-c", SERVE, "serve", "--port", str(port), "--no-cache"],
                                   env=os.environ | {"FACESUITE_HOME": home}, stdout=subprocess.DEVNULL, stderr=log)
        ready = False
        try:
            ready = wait_until_ready(url, process, timeout=300)  # model loading is slow on a busy machine
            if not ready:
                raise SystemExit(f"server not ready (exit code {process.poll()})")
            started = time.monotonic()
            warm = run_phase(url, payloads, clients, warmup, started + max_seconds)
            rss_warm = rss_mb(process.pid)
            begin = time.perf_counter()
            run = run_phase(url, payloads, clients, requests, started + max_seconds)
            seconds = time.perf_counter() - begin
            rss_after = rss_mb(process.pid)
        finally:
            process.terminate()
            process.wait(timeout=30)
            log.seek(0)
            server_log = log.read()
            if not ready:
                print(server_log[-2000:], file=sys.stderr)
    done = len(run.latencies) + len(run.errors)
    p50, p95, p99 = np.percentile(run.latencies, [50, 95, 99]) if run.latencies else (float("nan"),) * 3
    return {
        "clients": clients, "requests_per_client": requests, "requests": done,
        "completed": done == clients * requests, "errors": len(run.errors) + len(warm.errors),
        "first_errors": (warm.errors + run.errors)[:5],
        "p50_ms": round(float(p50), 1), "p95_ms": round(float(p95), 1), "p99_ms": round(float(p99), 1),
        "requests_per_s": round(done / seconds, 2) if seconds else None,
        "rss_after_warmup_mb": round(rss_warm, 1), "rss_after_run_mb": round(rss_after, 1),
        "rss_growth": round(rss_after / rss_warm - 1, 4),
        "server_log_tail": server_log[-2000:] if run.errors or warm.errors else "",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=250, help="requests per client")
    parser.add_argument("--warmup", type=int, default=10, help="warm-up requests per client, before the first RSS reading")
    parser.add_argument("--images", type=int, default=50, help="distinct FACECOM faces to send")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="stop the clients after this long")
    parser.add_argument("--max-growth", type=float, default=0.10, help="largest RSS growth accepted (0.10 = 10%%)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line")
    args = parser.parse_args()
    figures = load_test(args.clients, args.requests, args.warmup, args.images, args.max_seconds)
    if args.json:
        print(json.dumps(figures))
    else:
        print(f"{figures['requests']} requests ({figures['clients']} clients x {figures['requests_per_client']}), "
              f"{figures['errors']} errors, {figures['requests_per_s']} requests/s")
        print(f"latency ms: p50 {figures['p50_ms']}  p95 {figures['p95_ms']}  p99 {figures['p99_ms']}")
        print(f"server RSS MB: {figures['rss_after_warmup_mb']} after warm-up, {figures['rss_after_run_mb']} after the run "
              f"({figures['rss_growth']:+.1%})")
        for error in figures["first_errors"]:
            print(f"error: {error}", file=sys.stderr)
    ok = figures["errors"] == 0 and figures["completed"] and figures["rss_growth"] <= args.max_growth
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
