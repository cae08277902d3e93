"""`facesuite verify`, `calibrate`, `gallery ...`, `eval recognition` and `eval verification`."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from facesuite.cli.detect import add_detector_options, detector_settings, print_skips
from facesuite.errors import InputError


def _add_embedder_options(parser: argparse.ArgumentParser, routing_flag: bool = True) -> None:
    parser.add_argument("--embedder", default="default", help="embedder backend by registered name: dlib-torch (default), dlib-onnx, dlib")
    if routing_flag:  # eval recognition says --pipeline routed|single instead
        parser.add_argument("--no-routing", action="store_true", help="embed every face with the plain embedder (no distortion routing)")
    add_detector_options(parser)


def _analysis(args: argparse.Namespace, gallery: str | None = None):
    """The models these commands need: detection, routes and the embedder (no gender)."""
    from facesuite.analysis import FaceAnalysis

    routed = args.pipeline == "routed" if hasattr(args, "pipeline") else not args.no_routing
    return FaceAnalysis(args.embedder, detector_settings(args), use_cache=not args.no_cache,
                        routes="default" if routed else None, gender=None, gallery=gallery,
                        threshold=getattr(args, "threshold", None))


def cmd_verify(args: argparse.Namespace) -> int:
    result = _analysis(args).verify(args.first, args.second)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        verdict = "same person" if result.same else "different people"
        print(f"{verdict}: distance {result.distance:.4f} (threshold {result.threshold:.4f}, {result.threshold_source})")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from facesuite.data import read_identity_folders
    from facesuite.embed.calibration import save_calibration, threshold_at_far
    from facesuite.evaluate.recognition import calibration_pairs

    dataset = read_identity_folders(args.dir)
    if args.split:
        from facesuite.data import read_split

        dataset = dataset.subset(set(dataset.identities) - read_split(args.split))
    analysis = _analysis(args)
    paths = [p for p, _ in dataset.clean] + ([d.path for d in dataset.distorted] if args.with_distorted else [])
    identity = {str(p): i for p, i in dataset.clean} | {str(d.path): d.identity for d in dataset.distorted}
    vectors, crops, skipped = analysis.embed(paths, progress="calibrate")
    print_skips(skipped)
    genuine, impostor = calibration_pairs(vectors, [identity[str(c.path)] for c in crops])
    if genuine.size == 0:
        raise InputError("needs identities with two or more images to calibrate", args.dir)
    threshold = threshold_at_far(genuine, impostor, args.far)
    record = {
        "embedder": analysis.embedder.name, "threshold": threshold, "target_far": args.far,
        "tar": float((genuine <= threshold).mean()), "genuine_pairs": int(genuine.size),
        "impostor_pairs": int(impostor.size), "data": str(args.dir),
    }
    path = save_calibration(analysis.embedder.name, record, Path(args.save_to) if args.save_to else None)
    print(json.dumps(record) if args.json else
          f"threshold {threshold:.4f} at FAR {args.far:.2%} (TAR {record['tar']:.3f} on {genuine.size} genuine pairs); saved to {path}")
    return 0


def cmd_gallery_enroll(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from facesuite.data import read_identity_folders

    dataset = read_identity_folders(args.dir)
    analysis = _analysis(args)
    by_identity: dict[str, list[Path]] = {}
    for path, identity in dataset.clean:
        by_identity.setdefault(identity, []).append(path)
    enrolled = faces = 0
    skipped_all = []
    with analysis.open_gallery(args.gallery, create=True) as gallery:
        for identity, paths in tqdm(by_identity.items(), desc="enroll", unit="id"):
            # One transaction per identity and store: a crash never leaves half an identity.
            result = gallery.enroll(identity, paths)
            skipped_all += result.skipped
            faces += result.faces
            enrolled += result.faces > 0
    print_skips(skipped_all)
    print(f"enrolled {enrolled} identities ({faces} faces) into {args.gallery}; {len(skipped_all)} files skipped")
    return 0


def cmd_gallery_identify(args: argparse.Namespace) -> int:
    from facesuite.io import expand_paths

    paths = expand_paths(args.paths)
    with _analysis(args, gallery=args.gallery) as analysis:
        faces, skipped = analysis.faces(paths, progress="identify")
        rows = []
        for face, candidates in zip(faces, analysis.gallery.candidates(faces, top_k=args.top_k)):
            best = candidates[0]
            rows.append({
                "path": face.source, "identity": analysis.gallery.decide(best), "distance": round(best.distance, 6),
                "nearest": best.identity, "fallback": int(face.fallback),
                "candidates": ";".join(f"{m.identity}:{m.distance:.4f}" for m in candidates),
            })
    print_skips(skipped)
    _write_rows(rows, args.csv)
    return 0


def _write_rows(rows: list[dict], csv_path: str | None) -> None:
    if not rows:
        return
    handle = open(csv_path, "w", newline="", encoding="utf-8") if csv_path else sys.stdout
    writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    if csv_path:
        handle.close()
        print(f"wrote {len(rows)} rows to {csv_path}")


def cmd_gallery_list(args: argparse.Namespace) -> int:
    from facesuite.gallery import open_gallery

    with open_gallery(args.gallery) as gallery:
        entries = gallery.identities()
        if args.json:
            print(json.dumps({"embedder": gallery.embedder, "threshold": gallery.threshold,
                              "identities": [{"identity": i, "faces": n} for i, n in entries]}))
        else:
            for identity, count in entries:
                print(f"{identity}\t{count}")
            print(f"{len(entries)} identities, {len(gallery)} faces (embedder {gallery.embedder}, threshold {gallery.threshold:.4f})")
    return 0


def cmd_gallery_remove(args: argparse.Namespace) -> int:
    from facesuite.gallery import open_gallery

    with open_gallery(args.gallery) as gallery:  # the identity's views go in the same delete
        removed = gallery.remove(args.identity)
    print(f"removed {args.identity} ({removed} faces)")
    return 0


def cmd_eval_recognition(args: argparse.Namespace) -> int:
    from facesuite.data import read_identity_folders, read_split
    from facesuite.evaluate.recognition import (
        embed_dataset,
        recognition_metrics,
        write_recognition_report,
    )

    dataset = read_identity_folders(args.dir)
    if args.split:
        keep = read_split(args.split) & set(dataset.identities)
        if not keep:
            raise InputError("no identity of the split is in the data folder", args.split)
        dataset = dataset.subset(keep)
    if not dataset.distorted:
        raise InputError("no distorted probes (expected <identity>/distortion/<stem>_<type>.jpg)", args.dir)
    analysis = _analysis(args)
    data, skipped, routing = embed_dataset(analysis, dataset)
    print_skips(skipped)
    metrics = recognition_metrics(data, analysis.threshold, seed=args.seed)
    metrics.update(embedder=analysis.embedder.name, pipeline=args.pipeline, skipped=len(skipped))
    if routing:
        metrics["routing"] = routing
    out = Path(args.out)
    title = f"Recognition: {args.dir} ({analysis.embedder.name}, {args.pipeline} pipeline)"
    write_recognition_report(out, data, metrics, title, seed=args.seed)
    ident, verif = metrics["identification"], metrics["verification"]
    print(f"top-1 {ident['top1']:.4f} over {ident['probes']} distorted probes; source excluded {ident['source_excluded']}; "
          f"AUC {verif['auc']:.4f}; TAR@FAR1% {verif['tar_at_far_1pct']:.4f}")
    print("per distortion: " + ", ".join(f"{k} {v:.3f}" for k, v in ident["per_distortion"].items()))
    print(f"report: {out / 'report.html'}")
    return 0


def cmd_eval_verification(args: argparse.Namespace) -> int:
    from facesuite.data import read_pairs
    from facesuite.evaluate.verification import (
        pair_distances,
        verification_metrics,
        write_verification_report,
    )

    pairs = read_pairs(args.pairs)
    analysis = _analysis(args)
    distances, labels, kept, skipped = pair_distances(analysis, pairs)
    print_skips(skipped)
    metrics = verification_metrics(distances, labels, analysis.threshold, seed=args.seed)
    metrics.update(embedder=analysis.embedder.name, threshold_source=analysis.threshold_source,
                   pairs_skipped=len(pairs) - len(kept), images_skipped=len(skipped))
    out = Path(args.out)
    write_verification_report(out, pairs, distances, labels, kept, metrics, f"Verification: {args.pairs} ({analysis.embedder.name})")
    print(f"{metrics['pairs']} pairs ({metrics['pairs_skipped']} skipped): AUC {metrics['auc']:.4f}; "
          f"TAR@FAR1% {metrics['tar_at_far_1pct']:.4f}; TAR@FAR0.1% {metrics['tar_at_far_0.1pct']:.4f}; "
          f"10-fold accuracy {metrics['accuracy_10_fold']:.4f}; accuracy at threshold {metrics['threshold']:.4f} "
          f"({metrics['threshold_source']}) {metrics['accuracy_at_threshold']:.4f}")
    print(f"report: {out / 'report.html'}")
    return 0


def register(groups: dict) -> None:
    root = groups["root"]
    verify = root.add_parser("verify", help="same person or not, for two images", description="Compare two face images by embedding distance.")
    verify.add_argument("first")
    verify.add_argument("second")
    verify.add_argument("--threshold", type=float, default=None, help="override the calibrated threshold")
    verify.add_argument("--json", action="store_true")
    _add_embedder_options(verify)
    verify.set_defaults(handler=cmd_verify)

    calibrate = root.add_parser("calibrate", help="pick the verification threshold at a target false-accept rate",
                                description="Calibrate the same-person threshold on identity folders and store it for the embedder.")
    calibrate.add_argument("dir", help="identity folders: DIR/<identity>/*.jpg")
    calibrate.add_argument("--far", type=float, default=0.01, help="target false-accept rate (default 0.01)")
    calibrate.add_argument("--split", help="file of identities to leave out (e.g. your test identities)")
    calibrate.add_argument("--with-distorted", action="store_true", help="also use DIR/<identity>/distortion/* images")
    calibrate.add_argument("--save-to", help="folder to store calibration/<embedder>.json in (default $FACESUITE_HOME)")
    calibrate.add_argument("--json", action="store_true")
    _add_embedder_options(calibrate)
    calibrate.set_defaults(handler=cmd_calibrate)

    gallery = root.add_parser("gallery", help="enroll, identify, list and remove known people",
                              description="A persistent gallery of enrolled identities: a folder (FAISS + SQLite), "
                                          "milvus://HOST:PORT/COLLECTION (Milvus) or NAME.db (Milvus Lite).")
    actions = gallery.add_subparsers(dest="action", required=True, metavar="ACTION")
    enroll = actions.add_parser("enroll", help="enroll DIR/<identity>/*.jpg")
    enroll.add_argument("dir")
    identify = actions.add_parser("identify", help="who is in each image")
    identify.add_argument("paths", nargs="+", help="images or folders")
    identify.add_argument("--top-k", type=int, default=1)
    identify.add_argument("--csv", help="write results here (default: stdout)")
    listing = actions.add_parser("list", help="enrolled identities")
    listing.add_argument("--json", action="store_true")
    remove = actions.add_parser("remove", help="remove an identity")
    remove.add_argument("identity")
    for action, handler in ((enroll, cmd_gallery_enroll), (identify, cmd_gallery_identify),
                            (listing, cmd_gallery_list), (remove, cmd_gallery_remove)):
        action.add_argument("--gallery", required=True, help="gallery folder, milvus://HOST:PORT/COLLECTION or NAME.db")
        if action in (enroll, identify):
            _add_embedder_options(action)
        action.set_defaults(handler=handler)

    evaluate = groups["eval"].add_parser("recognition", help="identification and verification on identity folders",
                                         description="Gallery = clean DIR/<id>/*.jpg, probes = DIR/<id>/distortion/*.")
    evaluate.add_argument("dir")
    evaluate.add_argument("--out", required=True)
    evaluate.add_argument("--split", help="evaluate only the identities listed in this file")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the verification pairs")
    evaluate.add_argument("--threshold", type=float, default=None)
    evaluate.add_argument("--pipeline", choices=("routed", "single"), default="routed",
                          help="routed: each probe through the route of its detected distortion; single: plain embedder")
    _add_embedder_options(evaluate, routing_flag=False)
    evaluate.set_defaults(handler=cmd_eval_recognition)

    pairs = groups["eval"].add_parser("verification", help="same person or not on a list of image pairs (LFW-style)",
                                      description="PAIRS is a CSV with columns img1,img2,same (paths relative to it). Writes "
                                                  "metrics.json (AUC, TAR at FAR 1% and 0.1%, 10-fold and calibrated-threshold "
                                                  "accuracy), pairs.csv, roc.png, distances.png and report.html.")
    pairs.add_argument("pairs", help="CSV with columns img1,img2,same")
    pairs.add_argument("--out", required=True)
    pairs.add_argument("--threshold", type=float, default=None, help="override the calibrated threshold")
    pairs.add_argument("--seed", type=int, default=0, help="seed of the 10-fold split")
    _add_embedder_options(pairs)
    pairs.set_defaults(handler=cmd_eval_verification)
