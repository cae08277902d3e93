"""`facesuite train|eval|predict gender` and `facesuite explain`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from facesuite.cli.detect import (
    add_detector_options,
    add_prediction_arguments,
    detector_settings,
    exit_status,
    make_extractor,
    positive_int,
    print_skips,
    write_predictions,
)
from facesuite.config import DEFAULT_GENDER_KIND


class GenderKindChoices:
    """``--kind``'s choices: the gender kinds registry's names, read when argparse checks a
    ``--kind`` or shows them, since the registry's module imports PyTorch and building the parser
    for every command must not."""

    def _names(self) -> list[str]:
        from facesuite.classify.gender import GENDER_KINDS

        return GENDER_KINDS.list()

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __iter__(self):
        return iter(self._names())


def _analysis(args: argparse.Namespace):
    """Detection, the distortion routes and the gender model: the pass `analyze` runs, so both give
    a face the same gender (a noisy or rainy face's is read from its restored chip)."""
    from facesuite.analysis import FaceAnalysis

    return FaceAnalysis(detector=detector_settings(args), use_cache=not args.no_cache,
                        gender=args.model or "default", abstain=not getattr(args, "no_abstain", False))


def cmd_train(args: argparse.Namespace) -> int:
    from facesuite.text import output_folder
    from facesuite.train.gender import TrainOptions, train_gender

    from facesuite.errors import InputError

    if args.teacher is not None and args.kind != "cnn":
        raise InputError("--teacher trains the cnn kind by distillation; use it with --kind cnn")
    if args.kind in ("backbone", "embedding"):
        given = [flag for flag, value in (("--epochs", args.epochs), ("--head-epochs", args.head_epochs),
                                          ("--batch-size", args.batch_size), ("--lr", args.lr),
                                          ("--chip-size", args.chip_size), ("--device", args.device)) if value is not None]
        if given:
            raise InputError(f"{', '.join(given)}: the {args.kind} kind fits a logistic regression in one pass on "
                             "the recognition network's chips; these options train --kind cnn or finetune")
    output_folder(args.out)  # before hours of training, not after

    if args.kind == "finetune":
        from facesuite.train.gender_finetune import FinetuneOptions, train_finetune

        defaults = FinetuneOptions()
        options = FinetuneOptions(
            epochs=args.epochs or defaults.epochs, head_epochs=args.head_epochs if args.head_epochs is not None else defaults.head_epochs,
            folds=args.folds, batch_size=args.batch_size or defaults.batch_size, weighting=args.weighting, seed=args.seed,
            min_female_recall=args.min_female_recall, device=args.device or defaults.device, resume=args.resume,
        )
        print(json.dumps(train_finetune(args.dir, args.out, options, make_extractor(args))))
        return 0
    defaults = TrainOptions()
    options = TrainOptions(
        kind=args.kind, epochs=args.epochs or defaults.epochs, head_epochs=args.head_epochs, seed=args.seed, init=args.init,
        batch_size=args.batch_size or defaults.batch_size, lr=defaults.lr if args.lr is None else args.lr,
        chip_size=args.chip_size or defaults.chip_size, patience=args.patience, resume=args.resume,
        min_female_recall=args.min_female_recall, teacher=args.teacher, distill_alpha=args.distill_alpha,
        temperature=args.temperature,
    )
    summary = train_gender(args.dir, args.out, options, make_extractor(args))
    for reason in summary.pop("skipped"):
        print(f"skipped: {reason}", file=sys.stderr)
    print(json.dumps(summary))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from facesuite.classify.gender_eval import evaluate_gender
    from facesuite.data import read_gender_data
    from facesuite.text import output_folder

    output_folder(args.out)
    data = read_gender_data(args.dir)  # a wrong folder or list is reported before the model is loaded
    if data.left_out:
        print(f"{data.left_out} files in {args.dir} have no male/ or female/ folder or UTKFace name giving their gender: "
              "left out", file=sys.stderr)
    metrics, skipped = evaluate_gender(data, _analysis(args), args.out, args.gradcam)
    print_skips(skipped)
    from facesuite.cli.summary import print_summary

    per_class = metrics["per_class"]
    rows = [("accuracy, every face answered", metrics["accuracy"]), ("macro-F1", metrics["macro_f1"]),
            ("female recall", per_class["female"]["recall"]), ("male recall", per_class["male"]["recall"])]
    if "abstention" in metrics:
        overall = metrics["abstention"]["all"]
        rows += [("coverage (answered male or female)", overall["coverage"]),
                 ("accuracy on answered faces", overall["answered"]["accuracy"] if overall["answered"] else "-")]
    print_summary(f"gender on {args.dir}", [*rows, ("files skipped", len(skipped))])
    print(f"report: {Path(args.out) / 'report.html'}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from facesuite.classify.gender_eval import predict_gender
    from facesuite.io import expand_paths

    paths = expand_paths(args.paths)  # a missing path is an InputError here, before any work
    predictions, skipped = predict_gender(_analysis(args), paths, progress="gender")
    # gender: male, female, uncertain, or no face (then no p_female); fallback and no_face as in analyze's CSV
    rows = [[p.path, p.label, "" if p.p_female is None else f"{p.p_female:.6f}", int(p.fallback), int(p.face.no_face)]
            for p in predictions]
    write_predictions(args.csv, ["path", "gender", "p_female", "fallback", "no_face"], rows, skipped)
    return exit_status(args.paths, skipped)


def cmd_explain(args: argparse.Namespace) -> int:
    from facesuite.classify.gender_eval import explain_gender
    from facesuite.explain import save_rgb

    heat, info = explain_gender(args.image, _analysis(args))
    save_rgb(heat, args.out)
    print(json.dumps({**info, "out": args.out}))
    return 0


def register(groups: dict) -> None:
    model_help = "model folder (default: the shipped gender model)"

    train = groups["train"].add_parser(
        "gender", help="train a gender classifier on DIR/train/{male,female}",
        description="Train a gender classifier. DIR holds train/{male,female}/ and optionally val/{male,female}/ "
                    "(else a stratified 15% of train is held out).")
    train.add_argument("dir", help="folder with train/{male,female}/ (and optional val/), or train/ (and val/) "
                                    "of UTKFace files")
    train.add_argument("--out", required=True, help="model folder to write (weights, model.json, history.json; "
                                                     "curves.png for the cnn and finetune kinds)")
    train.add_argument("--kind", choices=GenderKindChoices(), default=DEFAULT_GENDER_KIND, metavar="KIND",
                       help="%(choices)s (default %(default)s). backbone: logistic regression on the recognition pass's embedding + pooled hidden "
                            "stages; embedding: on the 128-D embedding only; cnn: MobileNetV3-Small + SE head; finetune: "
                            "a gender branch fine-tuned on the face ResNet, selected by identity-disjoint k-fold CV")
    train.add_argument("--epochs", type=int, default=None,
                       help="cnn and finetune: epochs in total, both stages (default: cnn 12; finetune 8, the most CV may choose)")
    train.add_argument("--head-epochs", type=int, default=None,
                       help="heads-only epochs (default: cnn 0 from scratch, 1 otherwise; finetune 2)")
    train.add_argument("--folds", type=int, default=3, help="finetune: cross-validation folds on the training identities (default 3)")
    train.add_argument("--weighting", choices=("group", "class"), default="group",
                       help="finetune: weigh faces by race x gender x age band (group, default) or by gender only")
    train.add_argument("--device", default=None, help="finetune: cpu (default) or cuda")
    train.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same model (default 0)")
    train.add_argument("--init", default="scratch", metavar="scratch|PATH",
                       help="CNN start: random (scratch) or a state_dict file of GenderNet or torchvision MobileNetV3-Small")
    train.add_argument("--batch-size", type=positive_int, default=None, help="default: cnn 64, finetune 128")
    train.add_argument("--lr", type=float, default=None, help="cnn: AdamW learning rate (default 0.002; stage 2 of a PATH init uses a tenth)")
    train.add_argument("--chip-size", type=positive_int, default=None, help="cnn: input side in pixels (default 112)")
    train.add_argument("--patience", type=positive_int, default=4, help="early-stop after this many epochs without val macro-F1 gain")
    train.add_argument("--min-female-recall", type=float, default=0.0, metavar="R",
                       help="lower the balanced decision threshold until validation female recall is at least R (default 0: balanced)")
    train.add_argument("--teacher", default=None, metavar="MODEL_DIR",
                       help="cnn: train by distillation from this trained gender model folder (e.g. a finetune model): "
                            "its p_female per training face is the soft label, cached in OUT/teacher.npz")
    train.add_argument("--distill-alpha", type=float, default=0.5, metavar="A",
                       help="with --teacher: loss = A * class-weighted CE(hard labels) + (1 - A) * T^2 * KL(teacher || student) "
                            "(default 0.5)")
    train.add_argument("--temperature", type=float, default=2.0, metavar="T",
                       help="with --teacher: softening temperature T of both distributions (default 2)")
    train.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt (finetune: OUT/runs/ and OUT/cache/)")
    add_detector_options(train)
    train.set_defaults(handler=cmd_train)

    evaluate = groups["eval"].add_parser(
        "gender", help="evaluate a gender model on DIR/{male,female}",
        description="Write metrics.json, classification_report.txt, confusion_matrix.png, predictions.csv and report.html.")
    evaluate.add_argument("dir", help="folder with male/ and female/ sub-folders, or of UTKFace files "
                                       "(<age>_<gender>_<race>_<date>.jpg: the name gives the gender), or a CSV of "
                                       "labels with columns file,gender and optionally race,age (FairFace's), "
                                       "or CelebA's list_attr_celeba.txt (its Male attribute)")
    evaluate.add_argument("--model", default=None, help=model_help)
    evaluate.add_argument("--out", required=True, help="output folder")
    evaluate.add_argument("--no-abstain", action="store_true",
                          help="answer male or female for every face (no uncertain below the model's confidence floor)")
    evaluate.add_argument("--gradcam", type=int, default=8, help="Grad-CAM examples in the report, half right, half wrong (0: none)")
    add_detector_options(evaluate)
    evaluate.set_defaults(handler=cmd_eval)

    predict = groups["predict"].add_parser(
        "gender", help="predict gender for images or folders", description="Write path,gender,p_female,fallback per image.")
    add_prediction_arguments(predict, model_help)
    predict.add_argument("--no-abstain", action="store_true",
                         help="answer male or female for every face (no uncertain below the model's confidence floor)")
    add_detector_options(predict)
    predict.set_defaults(handler=cmd_predict)

    explain = groups["root"].add_parser(
        "explain", help="Grad-CAM heatmap of a model's decision on one face",
        description="Overlay a Grad-CAM heatmap on the aligned face chip (the output has the chip's size).")
    explain.add_argument("image", help="image file")
    explain.add_argument("--task", choices=("gender",), default="gender")
    explain.add_argument("--model", default=None, help=model_help)
    explain.add_argument("--out", required=True, help="PNG file to write")
    add_detector_options(explain)
    explain.set_defaults(handler=cmd_explain)
