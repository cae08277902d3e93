"""Dataset readers with validation: gender folders, identity folders, pair lists, splits.

Every non-hidden file is taken as an image; its content decides (any format Pillow reads, whatever
the suffix), and a file that is not an image is skipped and counted when it is loaded.

Layouts:
- gender:   ``ROOT/male/*``, ``ROOT/female/*`` (searched recursively), or a folder of UTKFace
  files, whose names give the gender, or a CSV of labels (``file,gender[,race,age]``, FairFace's),
  or CelebA's ``list_attr_celeba.txt`` (its ``Male`` attribute)
- identity: ``ROOT/<identity>/*.jpg`` clean images, and distorted copies in
  ``ROOT/<identity>/distortion/<stem>_<type>.jpg``; or a list of images and identities (CSV, or
  CelebA's ``image identity`` lines)
- pairs:    ``img1,img2,same`` rows (same is 1/0 or true/false), comma-, tab-, semicolon- or space-separated,
  with or without a header; relative paths are taken relative to the list's folder. Or LFW's
  ``pairs.txt``, or a verification ``.bin`` as the face recognition field ships LFW, CFP-FP,
  AgeDB-30, CALFW and CPLFW (images and labels in one file).

Long because every reader shares the list helpers (column aliases, the list's folder, one-line
errors naming the line), and a user's data set is read by one of them.
"""

from __future__ import annotations

import csv
import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from facesuite.errors import InputError
from facesuite.io import is_candidate_file, iter_images

GENDERS = ("male", "female")
DISTORTIONS = ("blurred", "foggy", "lowlight", "noisy", "rainy", "resized", "sunny")
UTKFACE_RACES = ("white", "black", "asian", "indian", "other")


def utkface_attributes(name: str) -> tuple[int, str, str] | None:
    """(age, gender, race) from a UTKFace file name ``<age>_<gender>_<race>_<date>.jpg.chip.jpg``
    (a ``utk_`` prefix, as the benchmark folders add, is allowed); None if it does not parse (a few
    UTKFace names do not, and no other data set's do)."""
    parts = name.removeprefix("utk_").split("_")
    if len(parts) < 4 or not parts[0].isdigit() or parts[1] not in ("0", "1") or not parts[2].isdigit():
        return None
    race = int(parts[2])
    if race >= len(UTKFACE_RACES):
        return None
    return int(parts[0]), GENDERS[int(parts[1])], UTKFACE_RACES[race]


# Column names and values a gender label list may use (FairFace's CSV among them).
_FILE_COLUMNS = ("file", "path", "image", "img", "filename")
_GENDER_COLUMNS = ("gender", "sex")
_GENDER_VALUES = {"male": "male", "m": "male", "man": "male", "female": "female", "f": "female", "woman": "female"}


def _read_list(path: Path, what: str) -> str:
    """The text of a list file (labels, identities, pairs), as InputError naming ``what`` when it
    cannot be read; a spreadsheet's byte-order mark is dropped, so it is not read as part of the
    first column's name."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {what} ({exc})", path) from None


def _column(header: dict, aliases: Sequence[str]) -> str | int | None:
    """What ``header`` (lower-case column names to names or positions) holds for the first of
    ``aliases`` it has, or None."""
    return next((header[alias] for alias in aliases if alias in header), None)


def read_gender_labels(csv_path: str | Path) -> tuple[list[tuple[Path, str]], dict[Path, tuple[str, ...]]]:
    """A CSV of gender labels, as FairFace ships (``file,age,gender,race,...``): ``(path,
    label)`` per row (paths relative to the CSV's folder), and per path the groups fairness is
    reported in, from optional ``race`` and ``age`` columns (an age in years becomes its band of
    :func:`age_band`; FairFace's bins, such as ``20-29``, are kept as they are)."""
    csv_path = Path(csv_path)
    reader = csv.DictReader(_read_list(csv_path, "label list").splitlines())
    columns = {name.strip().lower(): name for name in reader.fieldnames or ()}
    file_column, gender_column = _column(columns, _FILE_COLUMNS), _column(columns, _GENDER_COLUMNS)
    if file_column is None or gender_column is None:
        raise InputError(f"a gender label list needs a header with a file column ({', '.join(_FILE_COLUMNS)}) and a "
                         f"gender column ({', '.join(_GENDER_COLUMNS)})", csv_path)
    samples, groups = [], {}
    for line, row in enumerate(reader, start=2):
        label = _GENDER_VALUES.get((row[gender_column] or "").strip().lower())
        if label is None:
            raise InputError(f"line {line}: gender must be male or female, got {row[gender_column]!r}", csv_path)
        path = Path(row[file_column].strip())
        path = path if path.is_absolute() else csv_path.parent / path
        samples.append((path, label))
        race, age = (row.get(columns[c], "").strip() if c in columns else "" for c in ("race", "age"))
        if age.isdigit():
            age = age_band(int(age))
        groups[path] = tuple(group for group in (race, age and f"age {age}") if group)
    if not samples:
        raise InputError("label list has no rows", csv_path)
    return samples, groups


@dataclass
class GenderData:
    """A labelled gender data set: ``(path, label)`` samples, the groups each path is reported in
    besides its class (race, age), and how many files were left out for lack of a label."""

    source: Path  # the folder or list file it was read from
    samples: list[tuple[Path, str]]
    groups: dict[Path, tuple[str, ...]]
    left_out: int = 0


def read_celeba_attributes(list_path: str | Path) -> list[tuple[Path, str]]:
    """``(path, label)`` from CelebA's ``list_attr_celeba.txt``: a count, a line of 40 attribute
    names, then ``image`` and one ``1``/``-1`` per attribute; ``Male`` gives the label. Paths as
    :func:`read_identity_list` takes them."""
    list_path = Path(list_path)
    lines = [line.split() for line in _read_list(list_path, "attribute list").splitlines() if line.strip()]
    names = lines[1] if len(lines) > 1 else []
    if "Male" not in names:
        raise InputError("a CelebA attribute list needs a Male attribute on its second line", list_path)
    column = names.index("Male") + 1  # each row starts with the image name
    samples = []
    for number, row in enumerate(lines[2:], start=3):
        if len(row) != len(names) + 1 or row[column] not in ("1", "-1"):
            raise InputError(f"line {number}: expected an image and {len(names)} values of 1 or -1", list_path)
        samples.append((row[0], "male" if row[column] == "1" else "female"))
    if not samples:
        raise InputError("attribute list has no rows", list_path)
    folder = _image_folder(list_path, samples[0][0])
    return [(Path(name) if Path(name).is_absolute() else folder / name, label) for name, label in samples]


def _read_head(path: Path, size: int, what: str) -> bytes:
    """The first ``size`` bytes of a file, to tell its format before one reader parses it; as
    InputError naming ``what`` when it cannot be read."""
    try:
        with path.open("rb") as handle:
            return handle.read(size)
    except OSError as exc:
        raise InputError(f"cannot read {what} ({exc})", path) from None


def _is_celeba_attributes(path: Path) -> bool:
    """CelebA's attribute list starts with the number of images on a line of its own."""
    return _read_head(path, 64, "label list").split(b"\n", 1)[0].strip().isdigit()


def read_gender_data(source: str | Path) -> GenderData:
    """``male/`` and ``female/`` folders, a folder of UTKFace files (race and children under 13 as
    groups, from the names), a label CSV (:func:`read_gender_labels`) or CelebA's attribute list
    (:func:`read_celeba_attributes`)."""
    source = Path(source)
    if not source.exists():
        raise InputError("no such folder or label list", source)
    if source.is_file() and _is_celeba_attributes(source):
        return GenderData(source, read_celeba_attributes(source), {})
    if source.is_file():
        return GenderData(source, *read_gender_labels(source))
    samples = read_gender_folders(source)
    groups = {}
    for path, _ in samples:
        attributes = utkface_attributes(path.name)
        groups[path] = () if attributes is None else (attributes[2], *(("under 13",) if attributes[0] < 13 else ()))
    return GenderData(source, samples, groups, sum(1 for _ in iter_images(source)) - len(samples))


# Sub-folder names data sets use for the two classes (compared without case: Male/, Women/).
GENDER_FOLDERS = {"male": ("male", "men", "man"), "female": ("female", "women", "woman")}


def find_subfolder(root: Path, names: Sequence[str]) -> Path | None:
    """The sub-folder of ``root`` named, whatever its case, one of ``names`` (the first listed
    wins), or None."""
    present = {child.name.lower(): child for child in sorted(root.iterdir()) if child.is_dir()} if root.is_dir() else {}
    return next((present[name] for name in names if name in present), None)


def _require_dir(root: str | Path) -> Path:
    root = Path(root)
    if not root.exists():
        raise InputError("no such folder", root)
    if not root.is_dir():
        raise InputError("not a folder", root)
    return root


def read_gender_folders(root: str | Path) -> list[tuple[Path, str]]:
    """``(path, label)`` for every image under ``ROOT/male`` and ``ROOT/female``; in a folder
    without them, for every file named as UTKFace names its files
    (``<age>_<gender>_<race>_<date>.jpg``, gender 0 male, 1 female). Files whose names do not
    say a gender are left out (:class:`GenderData` counts them)."""
    root = _require_dir(root)
    folders = {label: find_subfolder(root, GENDER_FOLDERS[label]) for label in GENDERS}
    if not any(folders.values()):
        named = [(path, attributes[1]) for path in iter_images(root) if (attributes := utkface_attributes(path.name))]
        if not named:
            raise InputError(f"expected sub-folders {'/ and '.join(GENDERS)}/, or UTKFace file names "
                             "(<age>_<gender>_<race>_<date>.jpg)", root)
        return named
    samples: list[tuple[Path, str]] = []
    for label in GENDERS:
        folder = folders[label]
        if folder is None:
            raise InputError(f"expected sub-folders {'/ and '.join(GENDERS)}/ (missing {label}/)", root)
        images = list(iter_images(folder))
        if not images:
            raise InputError("class folder has no images", folder)
        samples.extend((path, label) for path in images)
    return samples


@dataclass
class DistortedImage:
    path: Path
    identity: str
    distortion: str
    source: Path  # the clean image this copy was made from (may not exist)


@dataclass
class IdentityDataset:
    """Clean images per identity and their distorted copies."""

    root: Path
    clean: list[tuple[Path, str]] = field(default_factory=list)
    distorted: list[DistortedImage] = field(default_factory=list)

    @property
    def identities(self) -> list[str]:
        return sorted({identity for _, identity in self.clean} | {d.identity for d in self.distorted})

    def subset(self, identities: set[str]) -> IdentityDataset:
        return IdentityDataset(
            self.root,
            [(p, i) for p, i in self.clean if i in identities],
            [d for d in self.distorted if d.identity in identities],
        )


def read_identity_folders(root: str | Path) -> IdentityDataset:
    """Read ``ROOT/<identity>/`` folders; a distortion type is the last ``_`` part of the stem. ROOT
    may also be a list of images and their identities (:func:`read_identity_list`)."""
    if Path(root).is_file():
        return read_identity_list(root)
    root = _require_dir(root)
    dataset = IdentityDataset(root)
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if not folders:
        raise InputError("expected one sub-folder per identity, found none", root)
    for folder in folders:
        identity = folder.name
        clean = sorted(p for p in folder.iterdir() if is_candidate_file(p))
        dataset.clean.extend((p, identity) for p in clean)
        distortion_dir = folder / "distortion"
        if distortion_dir.is_dir():
            for path in sorted(iter_images(distortion_dir)):
                stem, _, kind = path.stem.rpartition("_")
                dataset.distorted.append(
                    DistortedImage(path, identity, kind if stem else "unknown", folder / f"{stem}{path.suffix}")
                )
    if not dataset.clean and not dataset.distorted:
        raise InputError("identity folders contain no images", root)
    return dataset


_IDENTITY_COLUMNS = ("identity", "id", "person", "name", "label")


def _image_folder(list_path: Path, first_image: str) -> Path:
    """Where a list's relative image names point: the list's folder, or its ``img_align_celeba/``
    when the images are there (CelebA's layout)."""
    folder = list_path.parent
    if not (folder / first_image).exists() and (folder / "img_align_celeba" / first_image).exists():
        return folder / "img_align_celeba"
    return folder


def read_identity_list(list_path: str | Path) -> IdentityDataset:
    """Plain photos and their identities from a list: a CSV whose header has a file column
    (``file``, ``path``, ``image``, ...) and an identity column (``identity``, ``id``, ``person``,
    ...), or lines ``image identity`` with no header, as CelebA's ``identity_CelebA.txt``. Paths
    are relative to the list's folder, or to its ``img_align_celeba/`` when the images are there."""
    list_path = Path(list_path)
    lines = [line for line in _read_list(list_path, "identity list").splitlines() if line.strip()]
    header = {name.strip().lower(): index for index, name in enumerate(next(csv.reader(lines[:1]), []))}
    file_column, identity_column = _column(header, _FILE_COLUMNS), _column(header, _IDENTITY_COLUMNS)
    if file_column is not None and identity_column is not None:
        rows = [(number, *(row[column].strip() for column in (file_column, identity_column) if column < len(row)))
                for number, row in enumerate(csv.reader(lines[1:]), start=2)]
    else:
        rows = [(number, *line.split()) for number, line in enumerate(lines, start=1)]
    for number, *fields in rows:
        if len(fields) != 2 or not all(fields):
            raise InputError(f"line {number}: expected an image and its identity (a CSV with file and identity columns, "
                             "or 'image identity' lines)", list_path)
    if not rows:
        raise InputError("identity list has no rows", list_path)
    folder = _image_folder(list_path, rows[0][1])
    clean = [(Path(name) if Path(name).is_absolute() else folder / name, identity) for _, name, identity in rows]
    return IdentityDataset(folder, clean)


def read_pairs(list_path: str | Path, images: str | Path | None = None) -> list[tuple[Path, Path, bool]]:
    """Rows of a pair list: ``img1,img2,same`` rows (:func:`_csv_pairs`; paths relative to it), or LFW's
    ``pairs.txt`` (a first line of counts, then ``name i j`` for a pair of one person and
    ``name1 i name2 j`` for two people), whose images are ``IMAGES/<name>/<name>_<i:04d>.jpg``;
    IMAGES defaults to the list's folder, or its ``lfw/`` sub-folder when the names are there."""
    list_path = Path(list_path)
    if not list_path.is_file():
        raise InputError("a folder, not a pair list (a file of img1,img2,same rows)" if list_path.is_dir() else "no such pair list",
                         list_path)
    text = _read_list(list_path, "pair list")
    lines = text.splitlines()
    first = lines[0].split() if lines else []
    if first and all(field.isdigit() for field in first):
        pairs = _lfw_pairs(list_path, lines[1:], images)
    else:
        pairs = _csv_pairs(list_path, text)
    if not pairs:
        raise InputError("pair list has no rows", list_path)
    return pairs


def _lfw_pairs(list_path: Path, lines: list[str], images: str | Path | None) -> list[tuple[Path, Path, bool]]:
    rows = [(number, line.split()) for number, line in enumerate(lines, start=2) if line.strip()]
    for number, fields in rows:
        if len(fields) not in (3, 4) or not (fields[1].isdigit() and fields[-1].isdigit()):
            raise InputError(f"line {number}: expected 'name i j' or 'name1 i name2 j' (LFW's pairs.txt), got {' '.join(fields)!r}",
                             list_path)
    if images is None:
        root = list_path.parent
        if rows and not (root / rows[0][1][0]).is_dir() and (root / "lfw" / rows[0][1][0]).is_dir():
            root = root / "lfw"
    else:
        root = Path(images)

    def photo(name: str, index: str) -> Path:
        return root / name / f"{name}_{int(index):04d}.jpg"
    return [(photo(f[0], f[1]), photo(f[0], f[2]), True) if len(f) == 3 else (photo(f[0], f[1]), photo(f[2], f[3]), False)
            for _, f in rows]


# Column names pair lists use for the two images and the label, and the label's values.
_PAIR_COLUMNS = (("img1", "image1", "path1", "file1", "left", "first", "a"),
                 ("img2", "image2", "path2", "file2", "right", "second", "b"),
                 ("same", "label", "is_same", "issame", "match", "genuine", "target"))
_SAME_VALUES = {"1": True, "true": True, "yes": True, "same": True, "genuine": True,
                "0": False, "false": False, "no": False, "different": False, "impostor": False, "-1": False}


def _pair_rows(text: str) -> tuple[list[list[str]], int]:
    """The rows of a pair list and the line number of the first, as many data sets write them:
    comma-, tab- or semicolon-separated (a spreadsheet's export), or ``img1 img2 same`` lines
    split on white space."""
    lines = text.splitlines()
    first = next((line for line in lines if line.strip()), "")
    delimiter = next((d for d in (",", "\t", ";") if d in first), None)
    rows = list(csv.reader(lines, delimiter=delimiter)) if delimiter else [line.split() for line in lines]
    numbered = [(number, [field.strip() for field in row]) for number, row in enumerate(rows, start=1) if any(f.strip() for f in row)]
    return [row for _, row in numbered], numbered[0][0] if numbered else 1


def _csv_pairs(list_path: Path, text: str) -> list[tuple[Path, Path, bool]]:
    """``img1,img2,same`` rows under a header naming them (any of :data:`_PAIR_COLUMNS`), or the
    same three fields without a header."""
    rows, first_line = _pair_rows(text)
    header = {name.lower(): position for position, name in enumerate(rows[0])} if rows else {}
    columns = [_column(header, aliases) for aliases in _PAIR_COLUMNS]
    if None not in columns:
        rows, first_line = rows[1:], first_line + 1
    elif rows and len(rows[0]) == 3 and rows[0][2].lower() in _SAME_VALUES:
        columns = None  # no header: image, image, label on every line
    else:
        raise InputError("pair list needs img1,img2,same columns, under a header or not (or LFW's pairs.txt layout)", list_path)
    pairs: list[tuple[Path, Path, bool]] = []
    for line, row in enumerate(rows, start=first_line):
        fields = row if columns is None else [row[c] if c < len(row) else "" for c in columns]
        same = _SAME_VALUES.get(fields[2].lower()) if len(fields) == 3 else None
        if same is None or not fields[0] or not fields[1]:
            raise InputError(f"line {line}: expected two images and same (1/0 or true/false), got {', '.join(row)!r}", list_path)
        a, b = (Path(name) if Path(name).is_absolute() else list_path.parent / name for name in fields[:2])
        pairs.append((a, b, same))
    return pairs


def is_pair_bin(path: str | Path) -> bool:
    """Whether ``path`` is a verification ``.bin``: a pickle (its first byte is the protocol
    opcode) named ``.bin``."""
    path = Path(path)
    return path.suffix.lower() == ".bin" and path.is_file() and _read_head(path, 1, "pair list") == b"\x80"


class _PairBinUnpickler(pickle.Unpickler):
    """Reads only what a verification ``.bin`` holds (lists of image bytes and of labels): any
    class or callable in the file is refused, so the file cannot run code. NumPy arrays are
    refused too: rebuilding one from a damaged pickle can crash the interpreter."""

    def find_class(self, module: str, name: str):
        # Protocol-2 pickles written by Python 3 store bytes as _codecs.encode(text, "latin1").
        if (module, name) != ("_codecs", "encode"):
            raise pickle.UnpicklingError(f"it holds {module}.{name}, which a pair .bin does not")
        return super().find_class(module, name)


def read_pair_bin(bin_path: str | Path, images: str | Path) -> list[tuple[Path, Path, bool]]:
    """The pairs of a verification ``.bin`` (a pickle of ``(images, same)``: the encoded images,
    two per pair, and one label per pair), each image written into ``images/<bin's stem>/``
    (``<index>.jpg``, replacing what a file of that name held) so that reports can show it."""
    bin_path, images = Path(bin_path), Path(images)
    try:
        with bin_path.open("rb") as handle:
            content = _PairBinUnpickler(handle, encoding="bytes").load()
    except OSError as exc:
        raise InputError(f"cannot read the .bin ({exc})", bin_path) from None
    except Exception as exc:  # a damaged pickle fails in many ways (UnicodeDecodeError, MemoryError, ...), each bad input
        raise InputError(f"not a verification .bin of (images, labels) ({exc})", bin_path) from None
    try:
        encoded, same = (list(part) for part in content)
    except (TypeError, ValueError) as exc:
        raise InputError(f"not a verification .bin of (images, labels) ({exc})", bin_path) from None
    if not all(isinstance(image, (bytes, bytearray)) for image in encoded) or not all(label in (0, 1) for label in same):
        raise InputError("a verification .bin holds encoded images and True/False labels, this one other values", bin_path)
    if not same or len(encoded) != 2 * len(same):
        raise InputError(f"a verification .bin holds two images per label: {len(encoded)} images, {len(same)} labels", bin_path)
    folder = images / bin_path.stem
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{index:05d}.jpg" for index in range(len(encoded))]
    for path, image in zip(paths, encoded):
        path.write_bytes(image)  # the suffix is a name: the decoder goes by the content
    return [(paths[2 * i], paths[2 * i + 1], bool(label)) for i, label in enumerate(same)]


def read_split(path: str | Path) -> set[str]:
    """Names listed one per line (blank lines and ``#`` comments ignored)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("no such split file", path)
    lines = path.read_text(encoding="utf-8").splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


# --------------------------------------------------------------------------------------------
# What file names say about a face (UTKFace, FACECOM task_a)
# --------------------------------------------------------------------------------------------

def facecom_identity(stem: str) -> str:
    """FACECOM's identity of an image stem: ``Name_0001`` -> ``Name``; ``007_frontal`` stays."""
    head, _, tail = stem.rpartition("_")
    return head if head and tail.isdigit() else stem


def age_band(age: int) -> str:
    """The age bands fairness is reported in: children, adults, older people."""
    return "<13" if age < 13 else "13-60" if age <= 60 else ">60"
