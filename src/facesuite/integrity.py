"""SHA-256 checks of model files before they are loaded.

``facesuite/models/SHA256SUMS`` (``sha256sum`` format) records every model file shipped under
``facesuite/models/`` and the third-party weights ``python -m facesuite.train.export`` converts
them from, the latter as ``package:<module>/<path>`` (packages a maintainer installs, absent from a
plain install; the dlib reference embedder reads the ``.dat`` too). Loaders call :func:`verify_model_file` (one file) or
:func:`verify_model_folder` (a model folder) first; a file that differs from its record, or a
model file in a shipped folder that has no record, raises :class:`ModelIntegrityError` naming it.

Files the user names themselves (``--model DIR``, ``--init FILE``, their own calibration) are
the user's choice and are not checked: facesuite only ever reads them through formats that cannot
run code (``torch.load(weights_only=True)``, ``np.load(allow_pickle=False)``, JSON).

After changing a shipped model on purpose, rewrite the manifest::

    python -m facesuite.integrity --write     # record the current files
    python -m facesuite.integrity             # check them (exit 1 on a mismatch)
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import sys
from pathlib import Path

from facesuite import config
from facesuite.errors import ModelIntegrityError

MANIFEST_NAME = "SHA256SUMS"
# Files a loader reads. Model cards and plots are documentation and may change freely.
MODEL_SUFFIXES = frozenset({".pt", ".pth", ".npz", ".json", ".onnx", ".dat"})
# Third-party weights read from installed packages (versions pinned in requirements.txt and the
# Makefile): the sources of shipped exports.
PACKAGE_FILES = (
    "facenet_pytorch/data/pnet.pt",
    "facenet_pytorch/data/rnet.pt",
    "facenet_pytorch/data/onet.pt",
    "face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat",
)
_PACKAGE_PREFIX = "package:"

# (resolved path, size, mtime_ns) -> SHA-256 of files already hashed by this process: the dlib
# model is 22 MB and is loaded by several objects.
_digests: dict[tuple[str, int, int], str] = {}


def models_dir() -> Path:
    # Read at call time so tests can point it at a copy.
    return config.MODELS_DIR


def sha256_file(path: str | Path) -> str:
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _digests:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _digests[key] = digest.hexdigest()
    return _digests[key]


def package_file(entry: str) -> Path | None:
    """Where ``<module>/<path>`` of an installed package is, without importing it; None if absent."""
    module, _, relative = entry.partition("/")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / relative


def read_manifest(manifest: Path | None = None) -> dict[str, str]:
    """``{name: sha256}`` as recorded; names are paths under models/ or ``package:...`` entries."""
    manifest = manifest or models_dir() / MANIFEST_NAME
    if not manifest.is_file():
        raise ModelIntegrityError("model manifest missing (python -m facesuite.integrity --write)", manifest)
    entries = {}
    for line in manifest.read_text(encoding="utf-8").splitlines():
        if line.strip():
            digest, _, name = line.partition("  ")
            entries[name] = digest
    return entries


def current_entries() -> dict[str, str]:
    """The manifest as it should read for the files on disk now."""
    root = models_dir()
    entries = {
        path.relative_to(root).as_posix(): sha256_file(path)
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.suffix in MODEL_SUFFIXES
    }
    for entry in PACKAGE_FILES:
        path = package_file(entry)
        if path is not None and path.is_file():
            entries[_PACKAGE_PREFIX + entry] = sha256_file(path)
    return entries


def write_manifest() -> Path:
    manifest = models_dir() / MANIFEST_NAME
    lines = [f"{digest}  {name}\n" for name, digest in sorted(current_entries().items())]
    manifest.write_text("".join(lines), encoding="utf-8")
    return manifest


def _manifest_name(path: Path) -> str | None:
    """The manifest name of ``path``, or None for a file the user chose."""
    resolved = path.resolve()
    root = models_dir().resolve()
    if resolved.is_relative_to(root):
        return resolved.relative_to(root).as_posix()
    for entry in PACKAGE_FILES:
        shipped = package_file(entry)
        if shipped is not None and resolved == shipped.resolve():
            return _PACKAGE_PREFIX + entry
    return None


# Files already found intact in this process, by path, size, modification time and recorded hash:
# a model folder read by two loaders (the gender model and its head) or a model loaded again is
# hashed once.
_verified: set[tuple[Path, int, int, str]] = set()


def verify_model_file(path: str | Path) -> None:
    """Check a shipped or packaged model file against the manifest; other files pass unchecked."""
    path = Path(path)
    name = _manifest_name(path)
    if name is None:
        return
    expected = read_manifest().get(name)
    if expected is None:
        raise ModelIntegrityError("model file is not in the manifest (python -m facesuite.integrity --write)", path)
    stat = path.stat()
    key = (path.resolve(), stat.st_size, stat.st_mtime_ns, expected)
    if key in _verified:
        return
    if sha256_file(path) != expected:
        raise ModelIntegrityError(
            "model file does not match its recorded SHA-256 (modified or corrupt: reinstall facesuite)", path
        )
    _verified.add(key)


def verify_model_folder(folder: str | Path) -> None:
    """Check every model file of a shipped model folder; a folder the user chose passes unchecked."""
    folder = Path(folder)
    for path in sorted(folder.iterdir()) if folder.is_dir() else ():
        if path.is_file() and path.suffix in MODEL_SUFFIXES:
            verify_model_file(path)


def differences() -> dict[str, str]:
    """``{name: "changed" | "missing" | "unrecorded"}`` of every model file that differs from the
    manifest, by manifest name, in order."""
    recorded, actual = read_manifest(), current_entries()
    # A source package that is not installed is no problem: only the export reads it.
    absent = {name for name in recorded if name.startswith(_PACKAGE_PREFIX) and name not in actual}
    return {name: "unrecorded" if name not in recorded else "missing" if name not in actual else "changed"
            for name in sorted((recorded.keys() | actual.keys()) - absent) if recorded.get(name) != actual.get(name)}


def verify_installation() -> None:
    """Check every model file facesuite ships (and the packaged weights it records) at once, for a
    process that must not start on a damaged installation: :class:`ModelIntegrityError` naming the
    first file that differs."""
    for name, state in differences().items():
        path = package_file(name.removeprefix(_PACKAGE_PREFIX)) if name.startswith(_PACKAGE_PREFIX) else models_dir() / name
        raise ModelIntegrityError(f"model file {state}: it differs from the manifest (modified or corrupt: reinstall facesuite)",
                                  path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m facesuite.integrity", description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="record the current model files in the manifest")
    args = parser.parse_args(argv)
    if args.write:
        print(f"wrote {write_manifest()}")
        return 0
    problems = differences()
    for name, state in problems.items():
        print(f"{state}: {name}", file=sys.stderr)
    print(f"{len(current_entries())} model files, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
