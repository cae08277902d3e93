"""Command-line interface: parses arguments and calls the library, nothing more.

Each stage's commands live in a module of this package exposing ``register(groups)``; ``groups``
maps ``"root"`` to the top-level sub-commands and ``"train"``, ``"eval"``, ``"predict"`` to the
sub-commands of those verbs, so ``facesuite train gender`` and ``facesuite train distortion``
are registered by different modules.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import NoReturn

from facesuite import __version__
from facesuite.errors import Fault, InputError, ModelIntegrityError, describe_fault, log_fault, missing_extra
from facesuite.text import check_output_file, forget_output_folders, remove_empty_output_folders

# Modules registering commands, in the order their commands are listed in --help.
COMMAND_MODULES = ("detect", "analyze", "recognition", "gallery", "cluster", "gender", "age", "distortion", "serve", "batch")
VERBS = {
    "train": "train a model on your folders",
    "eval": "evaluate a model and write metrics.json, plots and report.html",
    "predict": "predict for images or folders and write a CSV",
}


class _OneLineErrors(argparse.ArgumentParser):
    """argparse whose errors are one line, as every other bad input's: the message, and where the
    usage is (its subcommands' parsers are of this class too)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (usage: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineErrors(
        prog="facesuite", description="Face detection, recognition, verification, gender and distortion analysis."
    )
    parser.add_argument("--version", action="version", version=f"facesuite {__version__}")
    root = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    groups = {"root": root}
    for verb, help_text in VERBS.items():
        verb_parser = root.add_parser(verb, help=help_text, description=help_text)
        groups[verb] = verb_parser.add_subparsers(dest="target", required=True, metavar="TASK")
    for name in COMMAND_MODULES:
        importlib.import_module(f"facesuite.cli.{name}").register(groups)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    forget_output_folders()
    try:
        try:
            check_output_file(getattr(args, "csv", None))  # every --csv is a file to write: checked before any work
            status = args.handler(args)
            sys.stdout.flush()  # inside the try: a reader that went away is answered below
            return status
        except ModuleNotFoundError as error:
            # A module an extra installs is the user's to add: one line naming the extra.
            raise missing_extra(error) or error
    except BrokenPipeError:
        # The reader of our output closed it (`| head`): what it wanted it has, so end quietly.
        # Standard output goes to devnull, or the interpreter's flush at exit raises again.
        _close_progress_bars()
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except InputError as error:
        _close_progress_bars()
        remove_empty_output_folders()
        print(f"facesuite: error: {error}", file=sys.stderr)
        return 2
    except ModelIntegrityError as error:
        # Not the input and not a bug: the installed models were changed. One line, no fault log.
        _close_progress_bars()
        print(f"facesuite: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        _close_progress_bars()
        print("facesuite: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - a fault of ours: one line here, the traceback in a log
        _close_progress_bars()
        log = log_fault(error, sys.argv[1:] if argv is None else argv)
        what = str(error) if isinstance(error, Fault) else describe_fault(error)
        print(f"facesuite: internal error (a fault in facesuite, not in the input): {what}; "
              f"full traceback in {log}", file=sys.stderr)
        return 1


def _close_progress_bars() -> None:
    # A bar left open by the interrupted stage would share its terminal line with the message.
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


if __name__ == "__main__":
    sys.exit(main())
