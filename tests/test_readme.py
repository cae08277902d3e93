"""The README's examples stay true: every command in a ``console`` block runs, on the sample photos,
and prints what the README shows under it; the Python block runs and prints the ``text`` block
that follows it. Numbers may differ within a small tolerance (float rounding between machines),
everything else must match exactly."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from facesuite.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e-?\d+)?")


def readme() -> str:
    return README.read_text(encoding="utf-8")


def console_examples() -> list[tuple[str, str]]:
    """(command, what the README shows it printing) for each ``$ `` line of the console blocks."""
    examples = []
    for block in re.findall(r"^```console\n(.*?)^```", readme(), flags=re.S | re.M):
        for chunk in re.split(r"^\$ ", block, flags=re.M)[1:]:
            command, _, shown = chunk.partition("\n")
            examples.append((command, shown))
    return examples


def python_example() -> tuple[str, str]:
    """The Python block and the ``text`` block after it (what it prints)."""
    [(code, shown)] = re.findall(r"^```python\n(.*?)^```\n\nIt prints:\n\n```text\n(.*?)^```", readme(), flags=re.S | re.M)
    return code, shown


def assert_same_output(printed: str, shown: str) -> None:
    """The words must be equal, each number within 2% (or 0.002) of the one shown."""
    printed_lines, shown_lines = printed.strip().splitlines(), shown.strip().splitlines()
    assert len(printed_lines) == len(shown_lines), f"printed:\n{printed}\nREADME shows:\n{shown}"
    for got, expected in zip(printed_lines, shown_lines):
        assert NUMBER.split(got.rstrip()) == NUMBER.split(expected.rstrip()), f"printed {got!r}, README shows {expected!r}"
        numbers, expected_numbers = map(float, NUMBER.findall(got)), map(float, NUMBER.findall(expected))
        assert list(numbers) == pytest.approx(list(expected_numbers), rel=0.02, abs=0.002), f"printed {got!r}, README shows {expected!r}"


@pytest.fixture()
def in_a_clone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, samples: Path) -> Path:
    """A working folder laid out like the repository's (``samples/`` in it), as the README assumes."""
    (tmp_path / "samples").symlink_to(samples, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_readme_commands_print_what_the_readme_shows(in_a_clone: Path, capsys: pytest.CaptureFixture[str]) -> None:
    examples = console_examples()
    assert len(examples) >= 4, "the README's quickstart has lost its commands"
    for command, shown in examples:  # in order: the gallery enrolled by one is read by the next
        program, *argv = shlex.split(command)
        assert program == "facesuite", command
        assert main(argv) == 0, command
        assert_same_output(capsys.readouterr().out, shown)


def test_readme_python_api_prints_what_the_readme_shows(in_a_clone: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, shown = python_example()
    exec(compile(code, "README.md python block", "exec"), {"__name__": "readme"})  # noqa: S102 - our own docs
    assert_same_output(capsys.readouterr().out, shown)


def test_the_comparison_can_fail() -> None:
    assert_same_output("distance 0.0519 (threshold 0.0932)", "distance 0.052 (threshold 0.093)")
    for printed in ("distance 0.0619 (threshold 0.0932)", "distance 0.0519 (limit 0.0932)", "distance 0.0519\nmore"):
        with pytest.raises(AssertionError):
            assert_same_output(printed, "distance 0.0519 (threshold 0.0932)")


def test_readme_stays_short() -> None:
    assert len(readme().splitlines()) < 250


def test_every_sample_photo_is_listed_with_its_data_set(samples: Path) -> None:
    listing = (samples / "README.md").read_text(encoding="utf-8")
    photos = sorted(p for p in samples.rglob("*") if p.is_file() and p.name != "README.md")
    for photo in photos:
        [row] = [line for line in listing.splitlines() if line.startswith(f"| `{photo.relative_to(samples)}` |")]
        assert "| FACECOM |" in row or "| UTKFace |" in row or "| ours (MIT, like the code) |" in row, row
    assert sum(p.stat().st_size for p in photos) < 2 * 1024 * 1024
    assert f"{len(photos)} images" in listing
