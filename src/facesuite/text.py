"""Output files and folders, and the text written to them.

Where a command writes is opened here, once: :func:`open_csv` for a file (``-`` is standard
output) and :func:`output_folder` for an ``--out`` folder. One that cannot be written is the
user's to fix, an :class:`~facesuite.errors.InputError` naming it (exit 2), not a fault of ours.

Text outputs (CSV, HTML, Parquet strings, the gallery's database, fault logs) are UTF-8, and file
and folder names need not be: Linux hands a name's bytes that are not UTF-8 to Python as
surrogates (PEP 383), which a UTF-8 encoder refuses. Everything facesuite writes as text goes
through the ``facesuite-escape`` error handler registered here, which writes such a byte as
``\\xNN``; the files themselves are still read and written under their own bytes."""

from __future__ import annotations

import codecs
import json
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import IO, TextIO

#: The output name that means standard output, wherever a file is asked for.
STDOUT = "-"

ESCAPE = "facesuite-escape"  # the codec error handler: pass as errors= when writing text


def _escape_undecoded_bytes(error: UnicodeError) -> tuple[str, int]:
    # A surrogate U+DC80-U+DCFF stands for the byte 0x80-0xFF; any other lone surrogate is
    # written as its code point.
    if not isinstance(error, UnicodeEncodeError):
        raise error
    text = error.object[error.start : error.end]
    return "".join(f"\\x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF else f"\\u{ord(c):04x}" for c in text), error.end


codecs.register_error(ESCAPE, _escape_undecoded_bytes)


@contextmanager
def open_output(path: str | Path, binary: bool = False, newline: str | None = None) -> Iterator[IO]:
    """An output file, text in UTF-8 unless ``binary``; ``-`` is standard output (left open). The
    bytes of a file name that are not UTF-8 are written as ``\\xNN`` escapes instead of stopping
    the run. A file that cannot be created is an :class:`InputError` naming it; no folder is made
    for it."""
    from facesuite.errors import InputError

    if is_stdout(path):
        stream = sys.stdout.buffer if binary else sys.stdout
        yield stream
        stream.flush()
        return
    try:
        handle = open(path, "wb") if binary else open(path, "w", newline=newline, encoding="utf-8", errors=ESCAPE)
    except OSError as error:
        raise InputError(f"cannot write this file ({error.strerror})", path) from None
    with handle:
        yield handle


def check_output_file(path: str | Path | None) -> None:
    """An :class:`InputError` naming ``path`` when it cannot be written (a folder, its folder
    missing, no permission); nothing for ``None`` or standard output. Checked before any work, so
    that a long run never ends on a file it cannot write."""
    from facesuite.errors import InputError

    if path is None or is_stdout(path):
        return
    target = Path(path)
    if target.is_dir():
        raise InputError("a folder, not a file to write", target)
    if not target.parent.is_dir():
        raise InputError(f"cannot write this file: {target.parent} is not a folder", target)
    if not os.access(target.parent, os.W_OK | os.X_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise InputError("cannot write this file (permission denied)", target)


def open_csv(path: str | Path) -> AbstractContextManager[TextIO]:
    """:func:`open_output` for a CSV file (the csv module writes its own line ends)."""
    return open_output(path, newline="")


#: How every CSV line facesuite writes ends: a newline alone (a terminal or ``cut`` shows no
#: carriage returns).
CSV_LINE_END = "\n"


def csv_writer(handle: TextIO):
    """A :func:`csv.writer` on a handle from :func:`open_csv`, in facesuite's one dialect."""
    import csv

    return csv.writer(handle, lineterminator=CSV_LINE_END)


def write_rows(path: str | Path, rows: Sequence[Mapping[str, object]]) -> None:
    """One CSV of result rows (the first row's keys are the header), written as every command
    writes its rows: a flag as 1 or 0, a missing value as an empty cell."""
    import csv

    def cell(value: object) -> object:
        if isinstance(value, bool):
            return int(value)
        return "" if value is None else value

    with open_csv(path) as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["path"], lineterminator=CSV_LINE_END)
        writer.writeheader()
        writer.writerows({key: cell(value) for key, value in row.items()} for row in rows)


def is_stdout(path: str | Path | None) -> bool:
    """Whether an output named ``path`` is standard output."""
    return path is not None and os.fspath(path) == STDOUT


#: Output folders :func:`output_folder` made in this run, for :func:`remove_empty_output_folders`.
_MADE: list[Path] = []


def output_folder(path: str | Path) -> Path:
    """The output folder ``path``, made (with its parents) if absent; an :class:`InputError` naming
    it when it cannot be made or written into, before any work is done."""
    from facesuite.errors import InputError

    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise InputError("the output folder is a file", folder)
    # The folder and each of its parents this call makes, outermost first (removed innermost first).
    _MADE.extend(reversed([f for f in (folder, *folder.parents) if not f.exists()]))
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"cannot create the output folder ({error.strerror or error})", folder) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError("cannot write into the output folder (permission denied)", folder)
    return folder


def utf8_path(path: str | Path) -> str:
    """``path`` as valid UTF-8 text, for outputs that require it (Parquet strings), escaped as
    :func:`open_csv` writes it."""
    return str(path).encode("utf-8", ESCAPE).decode("utf-8")


def remove_empty_output_folders() -> None:
    """Remove the output folders this run made that are still empty: a command refused for its
    input leaves no empty folder behind (a folder holding anything is kept, with what was written)."""
    while _MADE:
        folder = _MADE.pop()
        try:
            folder.rmdir()  # only an empty folder is removed
        except OSError:
            pass


def forget_output_folders() -> None:
    """Start a run: the folders earlier runs in this process made are theirs, kept."""
    _MADE.clear()


#: An indented JSON list holding only numbers, booleans or nulls (a box, an age range).
_SCALAR_LIST = re.compile(r"\[\s*\n\s*([-+.\deEtruefalsn]+(?:,\s*\n\s*[-+.\deEtruefalsn]+)*)\s*\n\s*\]")


def readable_json(value: object) -> str:
    """JSON indented for reading, a list of numbers kept on one line (``"box": [74.0, 54.5, 159.5,
    170.2]``): a face's record fits a screen."""
    return _SCALAR_LIST.sub(lambda m: "[" + ", ".join(item.strip() for item in m.group(1).split(",")) + "]",
                            json.dumps(value, indent=2))
