"""`facesuite verify`, `calibrate`, `eval recognition` and `eval verification`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from facesuite.cli.detect import add_detector_options, detector_settings, number_between, print_skips
from facesuite.cli.summary import print_summary
from facesuite.errors import InputError
from facesuite.evaluate.open_set import PROTOCOLS
from facesuite.text import output_folder

# A cosine distance between unit vectors runs from 0 (same direction) to 2 (opposite).
COSINE_DISTANCE = number_between(0, 2)


def add_embedder_options(parser: argparse.ArgumentParser, routing_flag: bool = True) -> None:
    parser.add_argument("--embedder", default="default", help="embedder backend by registered name: dlib-onnx (default), dlib-int8, dlib-torch, dlib")
    if routing_flag:  # eval recognition says --pipeline routed|single instead
        parser.add_argument("--no-routing", action="store_true", help="embed every face with the plain embedder (no distortion routing)")
    add_detector_options(parser)


def recognition_analysis(args: argparse.Namespace, gallery: str | None = None):
    """The models these commands need: detection, routes and the embedder (no gender)."""
    from facesuite.analysis import FaceAnalysis

    routed = args.pipeline == "routed" if hasattr(args, "pipeline") else not args.no_routing
    return FaceAnalysis(args.embedder, detector_settings(args), use_cache=not args.no_cache,
                        routes="default" if routed else None, gender=None, age=None, gallery=gallery,
                        threshold=getattr(args, "threshold", None), source_match=not getattr(args, "no_source_match", False))


def identities_in_split(folder: str, split: str | None):
    """The identity folders under ``folder``, only those listed in ``split`` when one is given."""
    from facesuite.data import read_identity_folders, read_split

    dataset = read_identity_folders(folder)
    if split:
        keep = read_split(split) & set(dataset.identities)
        if not keep:
            raise InputError("no identity of the split is in the data folder", split)
        dataset = dataset.subset(keep)
    return dataset


def cmd_verify(args: argparse.Namespace) -> int:
    from facesuite.classify.presence import NO_FACE
    from facesuite.classify.quality import UNRECOGNISABLE
    from facesuite.decide import DIFFERENT, SAME

    result = recognition_analysis(args).verify(args.first, args.second)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        for name, count in zip((args.first, args.second), result.faces_in_image):
            if count > 1:
                print(f"{name}: {count} faces, the most prominent compared (every face: facesuite analyze --all-faces)")
        if result.decision == NO_FACE:
            missing = " and ".join(name for name, none in zip((args.first, args.second), result.no_face) if none)
            print(f"no face: none found in {missing} (no decision)")
            return 0
        if result.decision == UNRECOGNISABLE:
            print(f"unrecognisable: {result.held_to} (no decision; distance {result.distance:.4f})")
            return 0
        verdict = {SAME: "same person", DIFFERENT: "different people"}[result.decision]
        print(f"{verdict}: distance {result.distance:.4f} (threshold {result.threshold:.4f}, {result.threshold_source})")
        if result.same and result.distance > result.search_threshold:
            # One rule, two questions (facesuite.decide): a search gives a stranger one chance per
            # enrolled identity, so it is held tighter than a pair.
            print(f"  gallery identify would answer unknown: a search holds these faces to {result.search_threshold:.4f}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from facesuite.data import read_identity_folders
    from facesuite.embed.calibration import far_marks, save_calibration, supports_far, threshold_at_far
    from facesuite.evaluate.recognition import calibration_pairs

    dataset = read_identity_folders(args.dir)
    if args.split:
        from facesuite.data import read_split

        dataset = dataset.subset(set(dataset.identities) - read_split(args.split))
    if len(dataset.identities) < 2:
        raise InputError("needs images of at least two identities to calibrate (different-person pairs)", args.dir)
    analysis = recognition_analysis(args)
    paths = [p for p, _ in dataset.clean] + ([d.path for d in dataset.distorted] if args.with_distorted else [])
    identity = {str(p): i for p, i in dataset.clean} | {str(d.path): d.identity for d in dataset.distorted}
    vectors, crops, skipped = analysis.embed(paths, progress="calibrate")
    print_skips(skipped)
    genuine, impostor = calibration_pairs(vectors, [identity[str(c.path)] for c in crops])
    if genuine.size == 0:
        raise InputError("needs identities with two or more images to calibrate", args.dir)
    if not supports_far(impostor.size, args.far):
        raise InputError(f"{impostor.size} different-person pairs cannot show FAR {args.far:g} (fewer than one pair "
                         f"within it): use --far {1 / impostor.size:.2g} or more, or photos of more people", args.dir)
    threshold = threshold_at_far(genuine, impostor, args.far)
    record = {
        "embedder": analysis.embedder.name, "threshold": threshold, "target_far": args.far,
        "tar": float((genuine <= threshold).mean()), "genuine_pairs": int(genuine.size),
        "impostor_pairs": int(impostor.size), "data": str(args.dir), "far_marks": far_marks(genuine, impostor),
    }
    if args.per_route:
        record.update(_route_thresholds(analysis, dataset, args.far))
    path = save_calibration(analysis.embedder.name, record, Path(args.save_to) if args.save_to else None)
    if args.json:
        print(json.dumps(record))
        return 0
    print(f"threshold {threshold:.4f} at FAR {args.far:.2%} (TAR {record['tar']:.3f} on {genuine.size} genuine and "
          f"{impostor.size} different-person pairs); saved to {path}")
    if args.save_to:
        return 0
    # The user's calibration file replaces the shipped one as a whole for this embedder: say what changes.
    routes = ("with a threshold per distortion type fitted here" if args.per_route else
              "at this one threshold for every distortion type (the shipped per-type thresholds are not used with it; "
              "--per-route fits them on these photos)")
    print(f"verify and gallery identify with {analysis.embedder.name} now decide {routes}; delete {path} to go back",
          file=sys.stderr)
    return 0


def _route_thresholds(analysis, dataset, fpir: float) -> dict:
    """Per distortion type the detector names, the identification threshold at ``fpir`` on the
    ``cross`` protocol of ``dataset`` (new photos of enrolled people, non-mated searches), its
    alternate clean photos searched as well."""
    import numpy as np

    from facesuite.classify.quality import fit_quality
    from facesuite.decide import OperatingPoint
    from facesuite.embed.calibration import supports_far
    from facesuite.evaluate.open_set import route_calibration_protocol, search, threshold_at_fpir
    from facesuite.evaluate.recognition import embed_dataset

    if not analysis.routed:
        raise InputError("--per-route needs the distortion routes (drop --no-routing)")
    data, _, _ = embed_dataset(analysis, route_calibration_protocol(dataset), source_match=False)
    if not data.probe_ids:
        raise InputError("--per-route needs identities with two or more clean images and their distorted copies", dataset.root)
    found = search(data.distances(), data.gallery_ids, data.probe_ids)
    labels = np.asarray(data.probe_labels)
    counts = {kind: int((labels == kind).sum()) for kind in sorted(set(labels.tolist()))}
    # A threshold needs enough non-mated searches to put one in 1/fpir beyond it.
    thresholds = {kind: threshold_at_fpir(found.non_mated[labels == kind], fpir) for kind, n in counts.items() if supports_far(n, fpir)}
    # Face quality: how likely each face is to be named right at its route's threshold.
    limits = OperatingPoint(analysis.threshold, route_thresholds=thresholds).search_thresholds(labels.tolist())
    quality = fit_quality(data.probe_features, found.correct & (found.distance <= limits))
    return {"route_thresholds": thresholds, "quality": quality.to_dict(), "route_target_fpir": fpir, "route_probes": counts,
            "route_protocol": "cross (alternate clean images enrolled; the others and their distorted copies searched)"}


def cmd_eval_recognition(args: argparse.Namespace) -> int:
    from facesuite.evaluate.open_set import protocol_dataset
    from facesuite.evaluate.recognition import (
        embed_dataset,
        recognition_metrics,
        write_recognition_report,
    )
    from facesuite.evaluate.verification import tar_text

    dataset, protocol = protocol_dataset(identities_in_split(args.dir, args.split), args.dir, args.protocol)
    out = output_folder(args.out)  # after the input is read (a bad one leaves no folder), before the work
    analysis = recognition_analysis(args)
    data, skipped, routing = embed_dataset(analysis, dataset)
    print_skips(skipped)
    metrics = recognition_metrics(data, analysis.operating_point, seed=args.seed)
    metrics.update(embedder=analysis.embedder.name, pipeline=args.pipeline, protocol=protocol, skipped=len(skipped),
                   source_matching=analysis.source_match)
    if routing:
        metrics["routing"] = routing
    title = f"Recognition: {args.dir} ({analysis.embedder.name}, {args.pipeline} pipeline)"
    from facesuite.report.faces import chips_of

    write_recognition_report(out, data, metrics, title, analysis.operating_point, seed=args.seed, chips=chips_of(analysis))
    ident, verif, open_set = metrics["identification"], metrics["verification"], metrics["open_set"]["overall"]
    source_excluded = ident["source_excluded"]
    print_summary(f"{ident['probes']} probes, {ident['identities']} identities ({args.pipeline}, {protocol} protocol)", [
        ("top-1 (face)", ident["top1"]),
        ("top-1 with source matching", ident.get("top1_with_source", "off")),
        ("source matches fired (naming another photo)",
         f"{metrics['source_match']['fired']} ({metrics['source_match']['overall']['fired_elsewhere']})" if metrics["source_match"]["enabled"] else "off"),
        ("top-1, own clean source removed", "n/a" if source_excluded is None else source_excluded),
        ("verification AUC", verif["auc"]), ("TAR at FAR 1%", tar_text(verif, "1pct")),
        ("TAR at FAR 0.1%", tar_text(verif, "0.1pct")), ("FNIR at FPIR 1%", open_set["fnir_at_fpir_0.01"]),
        ("wrong-identity rate at the operating point", open_set["wrong_identity_rate"]),
        ("coverage (answered with a name)", open_set["coverage"]),
        *((f"top-1, {kind}", value if "per_distortion_with_source" not in ident
           else f"{value:.3f} face, {ident['per_distortion_with_source'][kind]:.3f} with source matching")
          for kind, value in ident["per_distortion"].items()),
    ])
    print(f"report: {out / 'report.html'}")
    return 0


def cmd_eval_verification(args: argparse.Namespace) -> int:
    from facesuite.data import is_pair_bin, read_pair_bin, read_pairs
    from facesuite.evaluate.verification import (
        pair_distances,
        tar_text,
        verification_metrics,
        write_verification_report,
    )

    out = output_folder(args.out)
    # A .bin carries its images: they are written out once, for the report to show.
    pairs = read_pair_bin(args.pairs, args.images or out / "images") if is_pair_bin(args.pairs) else read_pairs(args.pairs, args.images)
    analysis = recognition_analysis(args)
    scores = pair_distances(analysis, pairs, source=args.pairs)
    print_skips(scores.skipped)
    metrics = verification_metrics(scores, analysis.threshold, seed=args.seed)
    metrics.update(embedder=analysis.embedder.name, threshold_source=analysis.operating_point.source,
                   pairs_skipped=len(pairs) - len(scores.kept), images_skipped=len(scores.skipped))
    from facesuite.report.faces import chips_of

    write_verification_report(out, pairs, scores, metrics, f"Verification: {args.pairs} ({analysis.embedder.name})",
                              chips=chips_of(analysis))
    print_summary(f"{metrics['pairs']} pairs ({metrics['pairs_skipped']} skipped)", [
        ("AUC", metrics["auc"]), ("TAR at FAR 1%", tar_text(metrics, "1pct")), ("TAR at FAR 0.1%", tar_text(metrics, "0.1pct")),
        ("10-fold accuracy", metrics["accuracy_10_fold"]),
        (f"accuracy at {metrics['threshold']:.4f} ({metrics['threshold_source']})", metrics["accuracy_at_threshold"]),
        ("pairs with no face in an image", metrics["no_face_pairs"]),
    ])
    print(f"report: {out / 'report.html'}")
    return 0


def register(groups: dict) -> None:
    root = groups["root"]
    verify = root.add_parser("verify", help="same person or not, for two images",
                             description="Same person or not: the distance between the main face of each image (its most "
                                         "prominent one) against the verification threshold. To find a person among the "
                                         "faces of a group photo, enrol them and run gallery identify --all-faces.")
    verify.add_argument("first", help="an image; its main face is compared")
    verify.add_argument("second", help="an image; its main face is compared")
    verify.add_argument("--threshold", type=COSINE_DISTANCE, default=None, help="override the calibrated threshold")
    verify.add_argument("--json", action="store_true", help="the result as one JSON object")
    add_embedder_options(verify)
    verify.set_defaults(handler=cmd_verify)

    calibrate = root.add_parser("calibrate", help="pick the verification threshold at a target false-accept rate",
                                description="Calibrate the same-person threshold on identity folders and store it for the embedder.")
    calibrate.add_argument("dir", help="identity folders DIR/<identity>/*.jpg, or a list of images and identities (a CSV with file and identity columns, or CelebA's 'image identity' lines)")
    calibrate.add_argument("--far", type=number_between(0, 1), default=0.01, help="target false-accept rate (default 0.01)")
    calibrate.add_argument("--split", help="file of identities to leave out (e.g. your test identities)")
    calibrate.add_argument("--with-distorted", action="store_true", help="also use DIR/<identity>/distortion/* images")
    calibrate.add_argument("--save-to", help="folder to store calibration/<embedder>.json in (default $FACESUITE_HOME)")
    calibrate.add_argument("--per-route", action="store_true",
                           help="also fit one identification threshold per distortion type at FPIR --far, on the cross "
                                "protocol of DIR (needs its distortion/ copies); identify then decides each face with "
                                "its type's threshold, never looser than the gallery's")
    calibrate.add_argument("--json", action="store_true")
    add_embedder_options(calibrate)
    calibrate.set_defaults(handler=cmd_calibrate)

    evaluate = groups["eval"].add_parser("recognition", help="identification and verification on identity folders",
                                         description="Gallery = clean DIR/<id>/*.jpg, probes = DIR/<id>/distortion/*; "
                                                     "folders of plain photos: alternate photos enrolled, the others probes.")
    evaluate.add_argument("dir", help="identity folders DIR/<identity>/*.jpg, or a list of images and identities (a CSV with file and identity columns, or CelebA's 'image identity' lines)")
    evaluate.add_argument("--out", required=True)
    evaluate.add_argument("--split", help="evaluate only the identities listed in this file")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the verification pairs")
    evaluate.add_argument("--threshold", type=COSINE_DISTANCE, default=None)
    evaluate.add_argument("--protocol", choices=PROTOCOLS, default=None,
                          help="facecom: every clean image enrolled, every distorted copy a probe; cross: alternate clean "
                               "images enrolled, the distorted copies of the others probes (a new photo of an enrolled "
                               "person), or the other photos themselves where there are no distorted copies (default: "
                               "facecom when DIR has distortion/ copies, else cross)")
    evaluate.add_argument("--pipeline", choices=("routed", "single"), default="routed",
                          help="routed: each probe through the route of its detected distortion; single: plain embedder")
    evaluate.add_argument("--no-source-match", action="store_true",
                          help="face matches only: do not look for probes that are processed copies of gallery images")
    add_embedder_options(evaluate, routing_flag=False)
    evaluate.set_defaults(handler=cmd_eval_recognition)

    pairs = groups["eval"].add_parser("verification", help="same person or not on a list of image pairs (LFW-style)",
                                      description="PAIRS is a list of img1,img2,same rows (comma-, tab-, semicolon- or "
                                                  "space-separated, header optional; paths relative to it), LFW's pairs.txt "
                                                  "(images IMAGES/<name>/<name>_<i:04d>.jpg), or a verification .bin (LFW, "
                                                  "CFP-FP, AgeDB-30, CALFW, CPLFW as the field ships them; its images are "
                                                  "written to IMAGES/<its name>/, IMAGES by default OUT/images). Writes "
                                                  "metrics.json (AUC, TAR at FAR 1% and 0.1%, 10-fold and calibrated-threshold "
                                                  "accuracy), pairs.csv, roc.png, distances.png and report.html.")
    pairs.add_argument("pairs", help="img1,img2,same rows, LFW's pairs.txt, or a verification .bin")
    pairs.add_argument("--images", help="LFW's image folder, <name>/<name>_<i:04d>.jpg (default: beside pairs.txt, or its lfw/); "
                                        "for a .bin, where its images are written, in a folder named after it (default: OUT/images)")
    pairs.add_argument("--out", required=True)
    pairs.add_argument("--threshold", type=COSINE_DISTANCE, default=None, help="override the calibrated threshold")
    pairs.add_argument("--seed", type=int, default=0, help="seed of the 10-fold split")
    add_embedder_options(pairs)
    pairs.set_defaults(handler=cmd_eval_verification)
