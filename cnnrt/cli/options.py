"""The options the subcommands share, each defined once so that its name, default and help read the same in
every ``cnnrt COMMAND --help``."""

from __future__ import annotations

import argparse

MODEL_HELP = "an .onnx path or a zoo name (see `cnnrt zoo list`)"


def add_model(p: argparse.ArgumentParser, *, many: bool = False, note: str = "") -> None:
    """The MODEL positional (one, or ``many`` for commands that loop over models)."""
    helptext = MODEL_HELP + (f"; {note}" if note else "")
    if many:
        p.add_argument("models", nargs="+", metavar="MODEL", help=f"one or more: {helptext}")
    else:
        p.add_argument("model", help=helptext)


def add_batch(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--batch", type=int, default=None, help="batch size of a symbolic batch dimension (for the random inputs)"
    )


def add_threads(p: argparse.ArgumentParser, helptext: str = "cnnrt threads (default: all cores)") -> None:
    p.add_argument("--threads", type=int, default=None, help=helptext)


def add_seed(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")


def add_inputs(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--input",
        "-i",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="NAME=FILE.npy, NAME=FILE.npz, or FILE.npz keyed by input names (repeatable); "
        "inputs not given are random (seeded) of the right shape",
    )


def add_rtol(p: argparse.ArgumentParser, when: str = "") -> None:
    """The agreement bound with onnxruntime, the project's one measure of a right answer (``when``: the option
    that turns the check on, if one does)."""
    p.add_argument(
        "--rtol",
        type=float,
        default=1e-3,
        help=f"{when}agreement bound with onnxruntime on max|x-ort|/max(1,max|ort|) (default 1e-3)",
    )


def add_json(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--json", default=None, metavar="PATH", help=f"write {what} as JSON")
