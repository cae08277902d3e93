"""`facesuite batch analyze|embed SRC --out DST`: a folder of images to a Parquet dataset, here or on Ray."""

from __future__ import annotations

import argparse
import sys

from facesuite.cli.detect import add_detector_options, detector_settings
from facesuite.config import DEFAULT_BATCH_SIZE


def cmd_batch(args: argparse.Namespace) -> int:
    from facesuite.batch import JobSpec, run_job
    from facesuite.text import output_folder

    output_folder(args.out)
    spec = JobSpec(args.kind, args.embedder, detector_settings(args), routing=not args.no_routing,
                   use_cache=not args.no_cache, batch_size=args.batch_size)
    summary = run_job(spec, args.src, args.out, engine=args.engine, ray_address=args.ray_address,
                      workers=args.workers, log=lambda message: print(message, file=sys.stderr))
    _print_results(args.kind, args.out)
    where = args.engine
    if summary.nodes is not None:
        where += f" ({len(summary.nodes)} nodes: " + ", ".join(f"{node[:8]} {rows}" for node, rows in sorted(summary.nodes.items())) + " rows)"
    print(f"{args.kind}: {summary.processed} images in {summary.seconds:.1f} s ({summary.images_per_second:.1f} images/s) "
          f"on {where}; {summary.errors} could not be read (rows with an error); {summary.already_done} already done; "
          f"output {args.out}")
    return 0


def _print_results(kind: str, out: str) -> None:
    """The headline of everything in the output (earlier runs' rows too): faces found, and for
    ``analyze`` the distortion types and genders named."""
    from collections import Counter
    from pathlib import Path

    import pyarrow.parquet as pq

    from facesuite.batch import output_schema
    from facesuite.cli.summary import print_summary

    columns = [c for c in ("error", "fallback", "no_face", "distortion", "gender") if c in output_schema(kind).names]
    rows_read = []
    for part in sorted(Path(out).glob("part-*.parquet")):
        with pq.ParquetFile(part) as parquet:  # pq.read_table would import pandas (0.3 s)
            rows_read += parquet.read(columns=columns).to_pylist()
    readable = [row for row in rows_read if row["error"] is None]
    found = sum(not row["fallback"] for row in readable)
    rows: list[tuple[str, object]] = [("rows in the output", len(rows_read)), ("could not be read", len(rows_read) - len(readable)),
                                      ("face found", f"{found} of {len(readable)}"), ("centre box (detector found none)", len(readable) - found)]
    if "no_face" in columns:
        rows.append(("no face at all (nothing decided)", sum(bool(row["no_face"]) for row in readable)))
    for column in ("distortion", "gender"):
        counts = Counter(row[column] for row in readable if row.get(column) is not None)
        if counts:
            rows.append((f"{column} named", ", ".join(f"{name} {n}" for name, n in counts.most_common())))
    print_summary(f"facesuite batch {kind}", rows)


def register(groups: dict) -> None:
    batch = groups["root"].add_parser(
        "batch", help="analyse or embed many images into a Parquet dataset (this machine or a Ray cluster)",
        description="Run the pipeline over a folder or list file of images and write one Parquet row per image. "
                    "Rerunning skips images already in the output.")
    kinds = batch.add_subparsers(dest="kind", required=True, metavar="KIND")
    for kind, help_text in (("analyze", "box, distortion, route, gender and embedding per image"),
                            ("embed", "box and (routed) embedding per image")):
        parser = kinds.add_parser(kind, help=help_text, description=help_text)
        parser.add_argument("src", help="folder of images (recursive) or a text file listing one image path per line")
        parser.add_argument("--out", required=True, help="output folder (Parquet dataset, created or resumed)")
        parser.add_argument("--engine", choices=("local", "ray"), default="local",
                            help="local: this machine's cores; ray: Ray Data on a Ray cluster (default local)")
        parser.add_argument("--ray-address", help="Ray cluster to join, e.g. HEAD:6379 (default: start Ray on this machine)")
        parser.add_argument("--workers", type=int, default=None,
                            help="local processes or Ray actors (default: one per core / per cluster CPU)")
        parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                            help=f"images per worker call (default {DEFAULT_BATCH_SIZE})")
        parser.add_argument("--embedder", default="default", help="embedder backend by registered name")
        parser.add_argument("--no-routing", action="store_true", help="embed every face with the plain embedder")
        add_detector_options(parser)
        parser.set_defaults(handler=cmd_batch)
