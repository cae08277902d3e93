"""`facesuite train|eval|predict age` and `facesuite train gender-abstention`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from facesuite.cli.detect import (add_detector_options, add_prediction_arguments, detector_settings, exit_status,
                                  make_extractor, positive_int, print_skips, write_predictions)


def _analysis(args: argparse.Namespace):
    """Detection, the distortion routes and the age model (no gender): the pass `analyze` runs, so
    both give a face the same age."""
    from facesuite.analysis import FaceAnalysis

    return FaceAnalysis(detector=detector_settings(args), use_cache=not args.no_cache, gender=None,
                        age=args.model or "default")


def cmd_train(args: argparse.Namespace) -> int:
    from facesuite.text import output_folder
    from facesuite.train.age import train_age

    output_folder(args.out)  # before the training, not after

    summary = train_age(args.dir, args.out, args.exclude, args.cache, args.folds, args.seed, make_extractor(args))
    for reason in summary.pop("skipped"):
        print(f"skipped: {reason}", file=sys.stderr)
    print(json.dumps(summary))
    return 0


def cmd_train_abstention(args: argparse.Namespace) -> int:
    from facesuite.classify.age import DEFAULT_AGE_DIR
    from facesuite.classify.gender_head import DEFAULT_GENDER_DIR
    from facesuite.train.gender_abstention import train_abstention

    summary = train_abstention(args.dir, args.model or DEFAULT_GENDER_DIR, args.age_model or DEFAULT_AGE_DIR, args.cache,
                               args.folds, args.seed, make_extractor(args), write=not args.dry_run)
    print(json.dumps(summary))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from facesuite.classify.age_eval import evaluate_age, read_age_data
    from facesuite.cli.summary import print_summary

    from facesuite.text import output_folder

    output_folder(args.out)
    samples = read_age_data(args.dir, args.split)  # a wrong folder or list is reported before the model is loaded
    metrics, skipped = evaluate_age(samples, _analysis(args), args.out)
    print_skips(skipped)
    overall = metrics["overall"]
    rows = [("faces", overall["n"]), ("MAE (years)", f"{overall['mae']:.2f} ({overall['mae_ci95'][0]:.2f}-{overall['mae_ci95'][1]:.2f})"),
            ("interval coverage", overall["interval_coverage"]),
            ("no face / below the quality floor (no age)", f"{metrics['no_face']} / {metrics['unrecognisable']}")]
    rows += [(f"MAE {name}", f"{g['mae']:.2f} ({g['mae_ci95'][0]:.2f}-{g['mae_ci95'][1]:.2f}), n={g['n']}")
             for name, g in metrics["groups"].items() if name.startswith("age ")]
    print_summary(f"age on {args.dir}", rows)
    print(f"report: {Path(args.out) / 'report.html'}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from facesuite.classify.age_eval import predict_ages
    from facesuite.io import expand_paths

    paths = expand_paths(args.paths)  # a missing path is an InputError here, before any work
    faces, skipped = predict_ages(_analysis(args), paths, progress="age")
    rows = []
    for face in faces:  # a box with no face has no age: empty cells
        ages = ["", "", ""] if face.age is None else [f"{face.age:.2f}", f"{face.age_range[0]:.2f}", f"{face.age_range[1]:.2f}"]
        rows.append([face.source, *ages, int(face.fallback), int(face.no_face)])
    write_predictions(args.csv, ["path", "age", "age_low", "age_high", "fallback", "no_face"], rows, skipped)
    return exit_status(args.paths, skipped)


def add_fold_options(parser: argparse.ArgumentParser) -> None:
    """What a trainer selecting on training folds of cached pass features takes."""
    parser.add_argument("--cache", metavar="DIR", help="keep the faces' features here and reuse them")
    parser.add_argument("--folds", type=positive_int, default=3, help="cross-validation folds (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def register(groups: dict) -> None:
    model_help = "age model folder (default: the shipped age model)"

    train = groups["train"].add_parser(
        "age", help="train the age model (a head stacked with a ridge in years) on UTKFace files",
        description="Train the age head on the recognition pass's features of UTKFace files (the name gives the age), "
                    "selecting among ridge and MLP heads by out-of-fold MAE; writes weights.npz, model.json, history.json.")
    train.add_argument("dir", help="folder of UTKFace files (<age>_<gender>_<race>_<date>.jpg), searched recursively")
    train.add_argument("--out", required=True, help="model folder to write")
    train.add_argument("--exclude", metavar="LIST", help="file names to leave out (e.g. splits/utkface_dev.txt); "
                                                         "files with the same bytes are left out too")
    add_fold_options(train)
    add_detector_options(train)
    train.set_defaults(handler=cmd_train)

    abstain = groups["train"].add_parser(
        "gender-abstention", help="choose when the gender head says uncertain, on training folds",
        description="Refit the gender and age heads on k-1 folds of DIR/{male,female}, calibrate the gender head's "
                    "confidence out of fold (age-blind or per predicted age band), choose the rule and its floor, and "
                    "write them into the gender model's model.json.")
    abstain.add_argument("dir", help="gender training folder: {male,female}/ (or train/{male,female}/)")
    abstain.add_argument("--model", default=None, help="gender model folder to write into (default: the shipped one)")
    abstain.add_argument("--age-model", default=None, help=model_help)
    add_fold_options(abstain)
    abstain.add_argument("--dry-run", action="store_true", help="print the figures, change no model")
    add_detector_options(abstain)
    abstain.set_defaults(handler=cmd_train_abstention)

    evaluate = groups["eval"].add_parser(
        "age", help="evaluate the age model on UTKFace files",
        description="MAE overall, per age band, race and gender with 95% bootstrap intervals, interval coverage; "
                    "writes metrics.json, predictions.csv, predicted_vs_true.png, groups.png and report.html.")
    evaluate.add_argument("dir", help="folder of UTKFace files (the name gives the true age)")
    evaluate.add_argument("--split", metavar="LIST", help="only the file names in this list (e.g. splits/utkface_dev.txt)")
    evaluate.add_argument("--model", default=None, help=model_help)
    evaluate.add_argument("--out", required=True, help="output folder")
    add_detector_options(evaluate)
    evaluate.set_defaults(handler=cmd_eval)

    predict = groups["predict"].add_parser(
        "age", help="predict age for images or folders", description="Write path,age,age_low,age_high,fallback per image.")
    add_prediction_arguments(predict, model_help)
    add_detector_options(predict)
    predict.set_defaults(handler=cmd_predict)
