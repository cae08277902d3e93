"""`facesuite analyze`: detection, distortion, route, gender, age and identity for each image."""

from __future__ import annotations

import argparse
import json
import sys

from facesuite.cli.detect import (
    add_all_faces_option,
    add_detector_options,
    detector_settings,
    exit_status,
    print_skips,
)
from facesuite.cli.summary import counted


def cmd_analyze(args: argparse.Namespace) -> int:
    from facesuite.analysis import FaceAnalysis
    from facesuite.io import expand_paths
    from facesuite.text import is_stdout, readable_json, write_rows

    paths = expand_paths(args.paths)
    with FaceAnalysis(args.embedder, detector_settings(args), use_cache=not args.no_cache,
                      routes=None if args.no_routing else "default", gallery=args.gallery,
                      source_match=not args.no_source_match, abstain=not args.no_abstain,
                      gender=args.gender_model or "default", age=args.age_model or "default") as analysis:
        results, skipped = analysis.faces(paths, max_faces=None if args.all_faces else 1,
                                          progress="analyze" if len(paths) > 1 else None)
    print_skips(skipped)
    rows = [r.to_dict() for r in results]
    if args.csv:
        write_rows(args.csv, rows)
        images, no_face = len({row["path"] for row in rows}), sum(row["no_face"] for row in rows)
        # Beside a CSV on standard output, the summary goes to standard error.
        print(f"analysed {counted(images, 'image', 'images')} ({counted(len(rows) - no_face, 'face', 'faces')}, "
              f"{counted(no_face, 'box', 'boxes')} with no face), {len(skipped)} skipped; wrote {args.csv}", file=sys.stderr if is_stdout(args.csv) else sys.stdout)
    else:
        print(json.dumps(rows) if args.json else readable_json(rows))
    return exit_status(args.paths, skipped)


def register(groups: dict) -> None:
    analyze = groups["root"].add_parser(
        "analyze", help="face box, distortion, route, gender, age and identity per image",
        description="Run the whole pipeline: detect, name the distortion, route to the recogniser that suits it, "
                    "gender (male, female or uncertain), age with its 80% interval, and identity when --gallery is given. Prints JSON unless --csv is given.")
    analyze.add_argument("paths", nargs="+", help="images or folders (recursive)")
    analyze.add_argument("--gallery", metavar="URI", help="gallery to identify against: a folder, NAME.db or milvus://HOST:PORT/COLLECTION")
    output = analyze.add_mutually_exclusive_group()
    output.add_argument("--csv", help="write one row per face here (the main face of each image unless --all-faces; -: standard output)")
    output.add_argument("--json", action="store_true", help="JSON on one line (without it, the same JSON is printed indented)")
    analyze.add_argument("--no-routing", action="store_true", help="embed every face with the plain embedder")
    analyze.add_argument("--no-source-match", action="store_true",
                         help="identify by face only: never answer that an image is a processed copy of an enrolled photo (match_kind source)")
    analyze.add_argument("--no-abstain", action="store_true",
                         help="gender male or female for every face (no uncertain below the model's confidence floor)")
    analyze.add_argument("--embedder", default="default", help="embedder backend by registered name")
    analyze.add_argument("--gender-model", metavar="DIR", help="a gender model folder written by `facesuite train gender` "
                                                              "(default: the shipped model)")
    analyze.add_argument("--age-model", metavar="DIR", help="an age model folder written by `facesuite train age` "
                                                           "(default: the shipped model)")
    add_all_faces_option(analyze)
    add_detector_options(analyze)
    analyze.set_defaults(handler=cmd_analyze)
