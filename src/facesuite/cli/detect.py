"""`facesuite detect`, and the detection options every face-reading command shares."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from facesuite.cli.summary import counted


def _fallback_box(text: str) -> tuple[float, float, float, float]:
    try:
        cx, cy, width, height = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("expected four fractions CX,CY,W,H, e.g. 0.5,0.51,0.37,0.49") from None
    if not (0 < width <= 1 and 0 < height <= 1 and 0 <= cx <= 1 and 0 <= cy <= 1):
        raise argparse.ArgumentTypeError("CX,CY must be fractions of the image (0-1) and W,H above 0 and at most 1, "
                                         "e.g. 0.5,0.51,0.37,0.49")
    return cx, cy, width, height


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (a count, a size, a number of epochs)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, not {value}")
    return value


def number_between(low: float, high: float) -> Callable[[str], float]:
    """An argparse type: a number from ``low`` to ``high``, so that a score, rate or distance out
    of its range is refused on the command line instead of quietly matching nothing or everything."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number from {low:g} to {high:g}, not {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected a number from {low:g} to {high:g}, not {text}")
        return value

    return parse


def add_detector_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("detection")
    group.add_argument("--assume-cropped", action="store_true",
                       help="images are face crops cut at the face box (the face fills the inner 80%%): skip detection. "
                            "Crops with more margin (UTKFace's, 200 px) are read better without it: the detector finds "
                            "faces that fill the frame")
    group.add_argument("--fallback-box", type=_fallback_box, default=None, metavar="CX,CY,W,H",
                       help="box used when no face is found, as fractions of the image (default 0.5,0.51,0.37,0.49)")
    group.add_argument("--min-score", type=number_between(0, 1), default=None, help="lowest MTCNN score accepted as a face (default 0.9)")
    group.add_argument("--no-cache", action="store_true", help="do not read or write the detection cache")


def add_all_faces_option(parser: argparse.ArgumentParser) -> None:
    # Only for commands reporting per face: enrolling or verifying several faces of one photo
    # would silently mix people.
    parser.add_argument("--all-faces", action="store_true",
                        help="every face of each image (default: the main face only)")


def detector_settings(args: argparse.Namespace):
    """DetectorSettings from the shared detection options."""
    from dataclasses import replace

    from facesuite.detect import DetectorSettings

    settings = DetectorSettings(assume_cropped=args.assume_cropped, all_faces=getattr(args, "all_faces", False))
    if args.fallback_box is not None:
        settings = replace(settings, fallback_box=args.fallback_box)
    if args.min_score is not None:
        settings = replace(settings, min_score=args.min_score)
    return settings


def make_extractor(args: argparse.Namespace):
    from facesuite.detect.extract import FaceExtractor

    return FaceExtractor(detector_settings(args), use_cache=not args.no_cache)


def print_skips(skipped) -> None:
    for item in skipped:
        print(f"skipped: {item.reason}", file=sys.stderr)


def add_prediction_arguments(parser: argparse.ArgumentParser, model_help: str) -> None:
    """What a ``predict`` command reads and writes: images or folders, one CSV, a model folder."""
    parser.add_argument("paths", nargs="+", help="image files or folders (searched recursively)")
    parser.add_argument("--csv", required=True, help="CSV file to write (-: standard output)")
    parser.add_argument("--model", default=None, help=model_help)


def write_predictions(csv_path: str, header: Sequence[str], rows: Sequence[Sequence[object]], skipped) -> None:
    """The CSV of a ``predict`` command (one row per image), its skips, and the line saying so."""

    from facesuite.text import csv_writer, is_stdout, open_csv

    with open_csv(csv_path) as handle:
        writer = csv_writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    print_skips(skipped)
    where = "on standard output" if is_stdout(csv_path) else f"in {csv_path}"
    print(f"{len(rows)} images predicted, {len(skipped)} skipped; CSV {where}", file=sys.stderr)


def exit_status(named: Sequence[str], skipped) -> int:
    """The exit status of a command that read the files or folders ``named`` on its command line:
    2 when a named file could not be read (or held nothing to use), as for any user error, after
    the rest was done; bad files found inside a named folder are skipped and counted without
    failing the run. Every command taking files ends with it."""
    explicit = {Path(p) for p in named if not Path(p).is_dir()}
    return 2 if any(item.path in explicit for item in skipped) else 0


def cmd_detect(args: argparse.Namespace) -> int:
    from facesuite.detect.extract import export_crops
    from facesuite.embed import ChipSpec
    from facesuite.io import expand_paths
    from facesuite.text import output_folder

    paths = expand_paths(args.paths)
    root = Path(args.paths[0]) if len(args.paths) == 1 and Path(args.paths[0]).is_dir() else None
    summary = export_crops(make_extractor(args), paths, output_folder(args.out), ChipSpec(args.size, args.padding), root)
    print_skips(summary.skipped)
    report = summary.to_dict()
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"{counted(report['images'], 'image', 'images')}: {counted(report['detected'], 'face', 'faces')} detected, "
            f"{counted(report['fallback'], 'centre-box fallback', 'centre-box fallbacks')}, {report['skipped']} skipped; "
            f"{report['ms_per_image']} ms/image. Crops and detections.csv in {args.out}"
        )
    return exit_status(args.paths, summary.skipped)


def cmd_train_presence(args: argparse.Namespace) -> int:
    from facesuite.text import output_folder
    from facesuite.train.presence import train_presence

    output_folder(args.out)  # before the training, not after

    record = train_presence(Path(args.facecom), Path(args.utkface) if args.utkface else None,
                            Path(args.exclude) if args.exclude else None, Path(args.out), args.seed)
    for group, figures in record["out_of_fold"].items():
        print(f"{group:28s} {figures['images']:5d} images, judged a face (out of fold): {figures['judged_face']:.3f}")
    print(f"C {record['C']}, threshold {record['threshold']:.4f}, veto {record['veto']:.4f}; model in {args.out}")
    return 0


def register(groups: dict) -> None:
    detect = groups["root"].add_parser(
        "detect", help="find, align and crop faces; writes crops and detections.csv",
        description="Detect the main face in each image (MTCNN), align it on 5 landmarks and write the crop. "
                    "This is the detector alone: a box it finds on a drawing, or the centre box where it finds "
                    "none, is written too; `facesuite analyze` also judges whether each box holds a face (no_face).")
    detect.add_argument("paths", nargs="+", help="image files or folders (searched recursively)")
    detect.add_argument("--out", required=True, help="output folder for crops/ and detections.csv")
    detect.add_argument("--size", type=positive_int, default=150, help="side of the aligned crop in pixels (default 150)")
    detect.add_argument("--padding", type=float, default=0.25, help="margin around the face as a fraction of its size (default 0.25)")
    detect.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_all_faces_option(detect)
    add_detector_options(detect)
    detect.set_defaults(handler=cmd_detect)

    presence = groups["train"].add_parser(
        "presence", help="train the face-presence head (is there a face in the box at all)",
        description="Fit the face-presence head on FACECOM identity folders (and UTKFace crops) against "
                    "non-face images made on the fly; thresholds chosen out of fold.")
    presence.add_argument("facecom", help="FACECOM task_b train folder (identity sub-folders)")
    presence.add_argument("--utkface", help="UTKFace images folder (its dev files are left out)")
    presence.add_argument("--exclude", help="identities to leave out (the dev split)")
    presence.add_argument("--out", required=True, help="model folder to write")
    presence.add_argument("--seed", type=int, default=0)
    presence.set_defaults(handler=cmd_train_presence)
