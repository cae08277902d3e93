"""`facesuite cluster` (who is in these photos) and `facesuite eval clustering`."""

from __future__ import annotations

import argparse

from facesuite.cli.detect import exit_status, print_skips
from facesuite.cli.recognition import add_embedder_options, identities_in_split, recognition_analysis
from facesuite.cli.summary import counted, print_summary
from facesuite.errors import InputError
from facesuite.text import output_folder


def cmd_cluster(args: argparse.Namespace) -> int:
    from facesuite.cluster import Clusters, write_clusters
    from facesuite.io import expand_paths

    if args.out is None and args.update is None:
        raise InputError("say where to write: --out OUT, or --update OUT to add to earlier clusters")
    previous = Clusters.load(args.update) if args.update else None
    out = output_folder(args.out or args.update)
    paths = expand_paths(args.paths)
    with recognition_analysis(args, gallery=args.gallery) as analysis:
        clusters = analysis.cluster(paths, progress="cluster", previous=previous)
    print_skips(clusters.skipped)
    write_clusters(clusters, out, f"Who is in these photos: {', '.join(args.paths)}")
    ids = clusters.ids()
    # A box with no face (a blank photo's centre box) is counted as such, as analyze counts it,
    # never as a face, and so never as a face left unclustered.
    faces = sum(not face.no_face for face in clusters.faces)
    no_face = len(clusters.faces) - faces
    unclustered = sum(not clusters.faces[row].no_face for row in clusters.unclustered())
    added = faces - (sum(not face.no_face for face in previous.faces) if previous else 0)
    print(f"{counted(faces, 'face', 'faces')} ({added} new) in {counted(len({f.path for f in clusters.faces}), 'photo', 'photos')}, "
          f"{counted(no_face, 'box', 'boxes')} with no face: "
          f"{counted(len(ids), 'cluster', 'clusters')} "
          f"({sum(clusters.size(c) > 1 for c in ids)} of two or more faces"
          + (f", {len(clusters.names)} named from the gallery" if args.gallery else "")
          + f"), {counted(unclustered, 'face', 'faces')} unclustered; {counted(len(clusters.skipped), 'file', 'files')} skipped")
    print(f"wrote clusters.csv, clusters.json and report.html to {out}")
    return exit_status(args.paths, clusters.skipped)


def cmd_eval_clustering(args: argparse.Namespace) -> int:
    from facesuite.evaluate.clustering import evaluate_clustering, write_clustering_report

    out = output_folder(args.out)
    dataset = identities_in_split(args.dir, args.split)
    with recognition_analysis(args) as analysis:
        clusters, truth, metrics = evaluate_clustering(analysis, dataset, with_distorted=not args.clean_only)
    print_skips(clusters.skipped)
    write_clustering_report(out, clusters, truth, metrics, f"Clustering: {args.dir}")
    print_summary(f"{metrics['faces']} faces of {metrics['people']} people (main face of each photo)", [
        ("BCubed F", metrics["bcubed"]["f"]), ("BCubed precision", metrics["bcubed"]["precision"]),
        ("BCubed recall", metrics["bcubed"]["recall"]), ("pairwise F1", metrics["pairwise"]["f1"]),
        ("pairwise precision", metrics["pairwise"]["precision"]), ("pairwise recall", metrics["pairwise"]["recall"]),
        ("clusters / people", f"{metrics['clusters']} / {metrics['people']}"),
        ("impurity (faces not of their cluster's person)", metrics["impurity"]),
        ("share left unclustered", metrics["unclustered_share"]), ("files skipped", len(clusters.skipped)),
    ])
    print(f"report: {out / 'report.html'}")
    return 0


def register(groups: dict) -> None:
    cluster = groups["root"].add_parser(
        "cluster", help="group every face of a photo collection by person",
        description="Every face of every photo, grouped by person with no gallery needed. Writes clusters.csv (one row "
                    "per face), clusters.json (per cluster: size, representative face, photos), report.html (a strip "
                    "of faces per cluster, largest first, then the faces left unclustered) and clusters.npz.")
    cluster.add_argument("paths", nargs="+", help="images or folders (recursive)")
    cluster.add_argument("--out", help="output folder")
    cluster.add_argument("--update", metavar="OUT",
                         help="add the photos to the clusters in OUT (written by an earlier run): its faces keep their "
                              "clusters and are not embedded again; results go back to OUT unless --out is given")
    cluster.add_argument("--gallery", metavar="URI",
                         help="name clusters whose identified faces are mostly one enrolled identity")
    add_embedder_options(cluster)
    cluster.set_defaults(handler=cmd_cluster)

    evaluate = groups["eval"].add_parser(
        "clustering", help="cluster identity folders and score the groups against the people",
        description="Clusters every photo of DIR/<identity>/ (with its distortion/ copies) and scores the main face of "
                    "each: pairwise and BCubed precision/recall/F, clusters against people, impurity, the share left "
                    "unclustered. Writes metrics.json, clusters.csv and report.html.")
    evaluate.add_argument("dir", help="identity folders DIR/<identity>/*.jpg, or a list of images and identities")
    evaluate.add_argument("--out", required=True)
    evaluate.add_argument("--split", help="evaluate only the identities listed in this file")
    evaluate.add_argument("--clean-only", action="store_true", help="leave out the distortion/ copies")
    add_embedder_options(evaluate)
    evaluate.set_defaults(handler=cmd_eval_clustering)
