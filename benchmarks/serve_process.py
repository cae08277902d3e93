"""Helpers for running ``facesuite serve`` as a child process: a free loopback port, and waiting
until the server is ready.

Used by the benchmarks that talk to a real server (``load.py``, ``api_latency.py``) and by the
tests that do the same (pytest puts this folder on ``sys.path``: ``pyproject.toml``).
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.request


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
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:  # noqa: S310 - our own loopback server
                if json.load(response)["models_loaded"]:
                    return True
        except (urllib.error.URLError, OSError, ValueError):
            pass
        time.sleep(0.3)
    return False
