"""Run ``facesuite serve`` as a child process: a free loopback port, and waiting until it is ready.

Used by the benchmarks and tests that talk to a real server; handy for scripts that do the same.
"""

from __future__ import annotations

import socket
import subprocess
import time

import httpx


def free_port(host: str = "127.0.0.1") -> int:
    """A port on ``host`` that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_until_ready(url: str, process: subprocess.Popen, timeout: float) -> bool:
    """True once the server at ``url`` reports its models loaded; False if ``process`` exits or
    ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/health", timeout=2).json()["models_loaded"]:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    return False
