"""The ``cnnrt`` command: one entry point, one subcommand per job.

Each subcommand lives in its own module ``cnnrt/cli/<name>.py``: its docstring is the command's
description, and it exposes ``HELP`` (one line for the command list), ``EPILOG`` (examples),
``add_arguments(parser)`` and ``run(args)``, so adding a command never touches the others.
The options several commands share are defined once, in ``cnnrt/cli/options.py``, with the checks of
their values, so that a bad value stops a command before any work. Errors print one line (the
CnnrtError message, or argparse's) unless ``--debug``, which is accepted anywhere on the line.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ["demo", "run", "zoo", "bench", "inspect", "compare", "profile", "compile", "batch", "cache"]


def build_parser() -> argparse.ArgumentParser:
    from cnnrt import __version__
    from cnnrt.cli.options import Parser

    p = Parser(
        prog="cnnrt",
        description="cnnrt: a graph-compiled inference engine for CNNs (ONNX in, Numba kernels out).",
        epilog="example: cnnrt demo resnet18",
    )
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors (anywhere on the line)")
    p.add_argument("--version", action="version", version=f"cnnrt {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        command = importlib.import_module(f"cnnrt.cli.{name}")
        cp = sub.add_parser(
            name,
            help=command.HELP,
            description=command.__doc__,
            epilog=command.EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,  # keep the docstring's and examples' lines
        )
        cp.set_defaults(func=getattr(command, "run", None))
        command.add_arguments(cp)
    return p


def _split_debug(argv: list[str]) -> tuple[list[str], bool]:
    """``--debug`` taken out wherever it stands (before a ``--`` that ends the options)."""
    end = argv.index("--") if "--" in argv else len(argv)
    rest = [a for a in argv[:end] if a != "--debug"] + argv[end:]
    return rest, len(rest) != len(argv)


def main(argv: list[str] | None = None) -> int:
    from cnnrt.cli.options import check_model
    from cnnrt.errors import CnnrtError

    parser = build_parser()
    argv, debug = _split_debug(list(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(argv)
    args.debug = debug
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        # every model named on the line exists (file or zoo name) before the first is loaded
        for model in [getattr(args, "model", None), *(getattr(args, "models", None) or [])]:
            if isinstance(model, str):
                check_model(model)
        return int(args.func(args) or 0)
    except CnnrtError as e:
        if args.debug:
            raise
        # one line: kernel errors can carry a multi-line Numba message (see --debug for it all)
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"cnnrt: error: {first}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
