"""The ``cnnrt`` command: one entry point, one subcommand per job.

Each subcommand lives in its own module ``cnnrt/cli/<name>.py``: its docstring is the command's
description, and it exposes ``HELP`` (one line for the command list), ``EPILOG`` (examples),
``add_arguments(parser)`` and ``run(args)``, so adding a command never touches the others.
The options several commands share are defined once, in ``cnnrt/cli/options.py``.
Errors print one line (the CnnrtError message) unless ``--debug``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ["demo", "run", "zoo", "bench", "inspect", "compare", "profile", "compile", "cache"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cnnrt",
        description="cnnrt: a graph-compiled inference engine for CNNs (ONNX in, Numba kernels out).",
        epilog="example: cnnrt demo resnet18",
    )
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
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


def main(argv: list[str] | None = None) -> int:
    from cnnrt.errors import CnnrtError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
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
