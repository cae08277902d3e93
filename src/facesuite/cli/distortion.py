"""`facesuite train|predict|eval distortion`, `facesuite train restorer` and `facesuite distort` (synthesis)."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from facesuite.cli.detect import add_detector_options, add_prediction_arguments, positive_int, print_skips
from facesuite.data import DISTORTIONS
from facesuite.distortion import FRAMINGS


def _print_skips(skipped) -> None:
    print_skips(skipped)
    if skipped:
        print(f"{len(skipped)} file(s) skipped", file=sys.stderr)


def cmd_train(args: argparse.Namespace) -> int:
    import numpy as np

    from facesuite.classify.distortion_input import InputSpec
    from facesuite.data import read_identity_folders, read_split
    from facesuite.errors import InputError
    from facesuite.io import iter_images
    from facesuite.text import output_folder
    from facesuite.train.distortion import CleanVariety, TrainSettings, train_detector

    if args.variants < 0 or args.photos_count < 0 or not 0 <= args.calibration_share < 1:
        raise InputError("--variants and --photos-count must be >= 0 and --calibration-share in [0, 1)")
    output_folder(args.out)  # before the training, not after
    dataset = read_identity_folders(args.dir)
    val = read_split(args.val_identities) if args.val_identities else None
    photos: list[Path] = []
    if args.photos:
        left_out = read_split(args.exclude_photos) if args.exclude_photos else set()
        candidates = sorted(p for p in iter_images(args.photos) if p.name not in left_out)
        if not candidates:
            raise InputError("no clean photos to train on in this folder", args.photos)
        chosen = np.random.default_rng(args.seed).permutation(len(candidates))[: args.photos_count]
        photos = [candidates[i] for i in sorted(chosen)]
    settings = TrainSettings(epochs=args.epochs, seed=args.seed, batch_size=args.batch_size, lr=args.lr,
                             spec=InputSpec(framing=args.framing))
    variety = CleanVariety(args.variants, photos, args.calibration_share)
    command = "facesuite " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else None
    result = train_detector(dataset, args.out, settings, val, synthetic=args.synthetic, command=command, variety=variety)
    _print_skips(result["skipped_files"])
    last = result["history"][-1]
    scores = f"train accuracy {last['train_accuracy']:.4f}"
    if "val_accuracy" in last:
        scores += f", held-out accuracy {last['val_accuracy']:.4f}"
    if result["calibration"] is not None:
        floor = result["calibration"]
        scores += (f"; route floor {floor['route_floor']:.3f} (routed precision {floor['routed_precision']:.3f} on "
                   f"{floor['images']} calibration images)")
    print(f"trained on {result['train_images']} images: {scores}. Model in {args.out}")
    return 0


def cmd_train_restorer(args: argparse.Namespace) -> int:
    from facesuite.data import read_identity_folders, read_split
    from facesuite.errors import InputError
    from facesuite.text import output_folder
    from facesuite.train.restorer import RestorerOptions, train_restorer

    for name, least in (("steps", 1), ("width", 1), ("depth", 2)):  # depth 2: the first and last convolutions
        if getattr(args, name) < least:
            raise InputError(f"--{name} must be at least {least}, got {getattr(args, name)}")
    output_folder(Path(args.out).parent)  # the network is a file: its folder, before the training
    dataset = read_identity_folders(args.dir)
    if args.holdout:
        dataset = dataset.subset(set(dataset.identities) - read_split(args.holdout))
    options = RestorerOptions(args.type, width=args.width, depth=args.depth, steps=args.steps, seed=args.seed)
    history, skipped = train_restorer(dataset, args.out, options)
    _print_skips(skipped)
    print(f"trained on {history['pairs']} {args.type} pairs in {history['seconds']} s: L1 {history['loss_by_tenth'][0]:.4f} "
          f"-> {history['loss_by_tenth'][-1]:.4f}. Network in {args.out}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from facesuite.analysis import FaceAnalysis
    from facesuite.classify.presence import NO_FACE
    from facesuite.cli.detect import detector_settings, exit_status, write_predictions
    from facesuite.io import expand_paths

    paths = expand_paths(args.paths)  # a missing path is an InputError here, before any work
    # The pass `analyze` runs, so both name a face's distortion alike; a box that holds no face has none.
    analysis = FaceAnalysis(detector=detector_settings(args), use_cache=not args.no_cache, gender=None, age=None,
                            distortion=args.model or "default")
    faces, skipped = analysis.faces(paths, progress="distortion")
    rows = [[face.source, *([NO_FACE, ""] if face.no_face else [face.distortion, f"{face.distortion_probability:.4f}"]),
             int(face.fallback), int(face.no_face)] for face in faces]
    write_predictions(args.csv, ["path", "distortion", "probability", "fallback", "no_face"], rows, skipped)
    return exit_status(args.paths, skipped)


def cmd_eval(args: argparse.Namespace) -> int:
    from facesuite.classify.distortion import DistortionDetector
    from facesuite.data import read_identity_folders, read_split
    from facesuite.evaluate.classification import write_classification_report
    from facesuite.report.faces import classification_examples
    from facesuite.text import csv_writer, open_csv, output_folder
    from facesuite.train.distortion import distortion_samples

    out = output_folder(args.out)
    dataset = read_identity_folders(args.dir)
    if args.identities:
        dataset = dataset.subset(read_split(args.identities))
    samples = distortion_samples(dataset)
    detector = DistortionDetector.load(args.model)
    started = time.perf_counter()
    done, skipped = detector.predict_paths([path for path, _ in samples])
    seconds = time.perf_counter() - started
    truth = dict(samples)
    rows = [(str(path), truth[path], prediction.label, prediction.probability) for path, prediction in done]
    with open_csv(out / "predictions.csv") as handle:
        writer = csv_writer(handle)
        writer.writerow(["path", "true", "predicted", "probability"])
        writer.writerows([path, true, predicted, f"{probability:.4f}"] for path, true, predicted, probability in rows)
    metrics = write_classification_report(
        args.out,
        [truth[path] for path, _ in done],
        [prediction.label for _, prediction in done],
        detector.labels,
        "Distortion detector",
        extra={"skipped": len(skipped), "ms_per_image": round(1000 * seconds / max(len(samples), 1), 2),
               "model": str(args.model or "shipped")},
        pictures=classification_examples(rows),
    )
    _print_skips(skipped)
    print(f"accuracy {metrics['accuracy']:.4f}, macro F1 {metrics['macro_f1']:.4f} on {len(done)} images; report in {args.out}")
    return 0


def cmd_distort(args: argparse.Namespace) -> int:
    from facesuite.distortion.synth import write_distorted
    from facesuite.text import output_folder

    summary = write_distorted(args.dir, output_folder(args.out), args.types, args.seed)
    _print_skips(summary.skipped)
    print(f"{summary.clean} clean images: wrote {summary.written} distorted copies under {args.out}")
    return 0


def register(groups: dict) -> None:
    model_help = "model folder (default: the shipped model)"
    train = groups["train"].add_parser(
        "distortion", help="train the distortion detector (clean + 7 types)",
        description="Train the 8-class distortion detector on identity folders (ROOT/<identity>/*.jpg and "
                    "ROOT/<identity>/distortion/<stem>_<type>.jpg).")
    train.add_argument("dir", help="identity-folder dataset")
    train.add_argument("--out", required=True, help="model folder to write (weights, config, history, curves)")
    train.add_argument("--epochs", type=positive_int, default=12, help="training epochs (default 12)")
    train.add_argument("--seed", type=int, default=0, help="random seed; same seed, same model (default 0)")
    train.add_argument("--batch-size", type=positive_int, default=64, help="batch size (default 64)")
    train.add_argument("--lr", type=float, default=3e-3, help="peak learning rate of AdamW (default 3e-3)")
    train.add_argument("--synthetic", action="store_true",
                       help="use only the clean images and synthesise the 7 distortions from them")
    train.add_argument("--val-identities", metavar="FILE",
                       help="identities (one per line) held out of training (e.g. the dev split); the curves are "
                            "measured on them only when there is no calibration fold")
    train.add_argument("--variants", type=int, default=400, metavar="N",
                       help="clean training frames given each clean variant (grayscale, phone colour/JPEG, mild low "
                            "resolution, tight crop), each with its seven real copies alike (default 400; 0: none; "
                            "not made with --synthetic)")
    train.add_argument("--photos", metavar="DIR",
                       help="other clean face photos (e.g. UTKFace crops), trained on as clean plus one synthetic "
                            "copy of each distortion type")
    train.add_argument("--exclude-photos", metavar="FILE", help="file names (one per line) under --photos to leave out, "
                                                               "e.g. splits/utkface_dev.txt")
    train.add_argument("--photos-count", type=int, default=1200, metavar="N",
                       help="photos drawn from --photos (seeded; default 1200)")
    train.add_argument("--framing", choices=FRAMINGS, default="face",
                       help="what the network reads: 'face', the square around the detected face (about 2.7 face "
                            "widths; the photo itself when no face is found), or 'photo', the whole photo "
                            "(default face)")
    train.add_argument("--calibration-share", type=float, default=0.15, metavar="S",
                       help="share of the training identities and photos held out to choose the confidence below which "
                            "a face takes the plain route (default 0.15; 0: no floor)")
    train.set_defaults(handler=cmd_train)

    restorer = groups["train"].add_parser(
        "restorer", help="train a learned restoration step for one distortion type",
        description="Train a residual CNN on pixel-aligned (distorted copy, clean photo) face chips of identity folders "
                    "(ROOT/<identity>/<stem>.jpg and ROOT/<identity>/distortion/<stem>_<type>.jpg); writes ONNX.")
    restorer.add_argument("dir", help="identity-folder dataset with distortion/ sub-folders")
    restorer.add_argument("--type", required=True, choices=DISTORTIONS, help="the distortion to undo")
    restorer.add_argument("--out", required=True, help="ONNX file to write (its history goes beside it as .json)")
    restorer.add_argument("--holdout", metavar="FILE", help="identities (one per line) left out of training, e.g. the dev split")
    restorer.add_argument("--steps", type=int, default=1500, help="training steps of 32 patches (default 1500)")
    restorer.add_argument("--width", type=int, default=16, help="channels per layer (default 16)")
    restorer.add_argument("--depth", type=int, default=6, help="convolution layers (default 6)")
    restorer.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    restorer.set_defaults(handler=cmd_train_restorer)

    predict = groups["predict"].add_parser(
        "distortion", help="name the distortion of each image (clean or one of 7 types)",
        description="The distortion of each image's main face, as analyze names it: clean or " + ", ".join(DISTORTIONS)
                    + " (no face: none found); writes path,distortion,probability,fallback,no_face.")
    add_prediction_arguments(predict, model_help)
    add_detector_options(predict)
    predict.set_defaults(handler=cmd_predict)

    evaluate = groups["eval"].add_parser(
        "distortion", help="evaluate the distortion detector on identity folders",
        description="Per-class precision/recall/F1 and confusion matrix of the distortion detector.")
    evaluate.add_argument("dir", help="identity-folder dataset with distortion/ sub-folders")
    evaluate.add_argument("--out", required=True, help="report folder")
    evaluate.add_argument("--model", help=model_help)
    evaluate.add_argument("--identities", metavar="FILE", help="evaluate only these identities (e.g. the dev split)")
    evaluate.set_defaults(handler=cmd_eval)

    distort = groups["root"].add_parser(
        "distort", help="synthesise distorted copies of clean images",
        description="Write OUT/<identity>/distortion/<stem>_<type>.jpg for each clean image of DIR, "
                    "next to a link or copy of the clean image.")
    distort.add_argument("dir", help="identity-folder dataset (clean images are used)")
    distort.add_argument("--out", required=True, help="output folder")
    distort.add_argument("--types", nargs="+", choices=DISTORTIONS, default=list(DISTORTIONS), help="types to make (default all 7)")
    distort.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    distort.set_defaults(handler=cmd_distort)
