"""Text outputs (CSV, HTML, Parquet strings, the gallery's database, fault logs) are UTF-8, and file
and folder names need not be: Linux hands a name's bytes that are not UTF-8 to Python as
surrogates (PEP 383), which a UTF-8 encoder refuses. Everything facesuite writes as text goes
through the ``facesuite-escape`` error handler registered here, which writes such a byte as
``\\xNN``; the files themselves are still read and written under their own bytes."""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import TextIO

ESCAPE = "facesuite-escape"  # the codec error handler: pass as errors= when writing text


def _escape_undecoded_bytes(error: UnicodeError) -> tuple[str, int]:
    # A surrogate U+DC80-U+DCFF stands for the byte 0x80-0xFF; any other lone surrogate is
    # written as its code point.
    if not isinstance(error, UnicodeEncodeError):
        raise error
    text = error.object[error.start : error.end]
    return "".join(f"\\x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF else f"\\u{ord(c):04x}" for c in text), error.end


codecs.register_error(ESCAPE, _escape_undecoded_bytes)


def open_csv(path: str | Path) -> TextIO:
    """A CSV output file, UTF-8: the bytes of a file name that are not UTF-8 are written as
    ``\\xNN`` escapes instead of stopping the run."""
    return open(path, "w", newline="", encoding="utf-8", errors=ESCAPE)


def utf8_path(path: str | Path) -> str:
    """``path`` as valid UTF-8 text, for outputs that require it (Parquet strings), escaped as
    :func:`open_csv` writes it."""
    return str(path).encode("utf-8", ESCAPE).decode("utf-8")
