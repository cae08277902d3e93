"""Every Python block of the README runs as written (in one namespace, top to bottom), so the
documented API cannot drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.S | re.M)


def test_readme_python_blocks_run(facecom_b: Path, capsys) -> None:
    blocks = python_blocks()
    assert len(blocks) >= 2, "the README's Python API section has lost its examples"
    namespace: dict = {"__name__": "readme"}
    for number, block in enumerate(blocks, start=1):
        exec(compile(block, f"README.md python block {number}", "exec"), namespace)  # noqa: S102 - our own docs
    printed = capsys.readouterr().out
    assert "shipped calibration, FAR 1%" in printed and "Colin_Powell" in printed
