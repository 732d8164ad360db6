"""The options the subcommands share, each defined once so that its name, default and help read the same in
every ``cnnrt COMMAND --help``, and the checks of every option's value.

Values are checked while the command line is parsed (the ``type=`` functions below), so a bad value
stops the command before any model is exported, built or timed; argparse reports the failure as one
line (see ``Parser``). What needs the model itself (``--shape`` names) is checked by
:func:`check_shapes` as soon as the model is known, still before any run.
"""

from __future__ import annotations

import argparse
import difflib
import math
import os
from pathlib import Path

from cnnrt.errors import InputError, ModelLoadError

MODEL_HELP = "an .onnx path or a zoo name (see `cnnrt zoo list`)"
PLOT_SUFFIXES = (".png", ".svg", ".pdf")
# magic bytes of the image formats people pass as --input by mistake
_IMAGE_MAGIC = {b"\x89PNG": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF8": "GIF", b"BM": "BMP", b"II*\x00": "TIFF"}


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error: the message and where the options are listed, no usage block."""

    def error(self, message: str):
        self.exit(2, f"cnnrt: error: {message} (`{self.prog} --help` lists the options)\n")


# ---------------------------------------------------------------------------- value checks (type=)


def _number(kind, s: str, what: str, ok) -> int | float:
    try:
        v = kind(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {s!r}") from None
    if not ok(v):
        raise argparse.ArgumentTypeError(f"expected {what}, got {s!r}")
    return v


def positive_int(s: str) -> int:
    return _number(int, s, "a positive integer", lambda v: v >= 1)


def nonnegative_int(s: str) -> int:
    return _number(int, s, "an integer >= 0", lambda v: v >= 0)


def positive_float(s: str) -> float:
    return _number(float, s, "a positive number", lambda v: v > 0 and math.isfinite(v))


def nonnegative_float(s: str) -> float:
    return _number(float, s, "a number >= 0", lambda v: v >= 0 and math.isfinite(v))


def int_list(s: str) -> list[int]:
    """Comma-separated positive integers (a sweep: ``1,8``)."""
    vals = [x.strip() for x in s.split(",") if x.strip()]
    if not vals:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {s!r}")
    return [_number(int, x, "comma-separated positive integers", lambda v: v >= 1) for x in vals]


def shape_spec(s: str) -> tuple[str, tuple[int, ...]]:
    """``NAME:DIMS`` with DIMS like ``1x3x224x224`` (or ``1,3,224,224``)."""
    name, sep, dims = s.rpartition(":")
    parts = dims.replace(",", "x").split("x")
    if not sep or not name or not all(p.strip().isdigit() and int(p) >= 1 for p in parts):
        raise argparse.ArgumentTypeError(f"expected NAME:DIMS such as input:1x3x224x224, got {s!r}")
    return name, tuple(int(p) for p in parts)


def image_kind(path: Path) -> str | None:
    """'PNG', 'JPEG', ... when the file starts like an image, else None."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((kind for magic, kind in _IMAGE_MAGIC.items() if head.startswith(magic)), None)


def input_spec(s: str) -> str:
    """``NAME=FILE`` or ``FILE``: the file must exist and hold arrays, not an image."""
    file = Path(s.split("=", 1)[1] if "=" in s else s)
    if not file.is_file():
        raise argparse.ArgumentTypeError(f"no file {str(file)!r}")
    kind = image_kind(file)
    if kind:
        raise argparse.ArgumentTypeError(
            f"{str(file)!r} is a {kind} image, not a .npy/.npz array; "
            "give images with `cnnrt run MODEL --image FILE` (resized, centre-cropped and normalised)"
        )
    return s


def output_path(s: str, suffixes: tuple[str, ...] = ()) -> str:
    """A file to write: its directory must exist and be writable (none is created), and its suffix,
    when ``suffixes`` are given, must be one of them."""
    if suffixes and Path(s).suffix.lower() not in suffixes:
        raise argparse.ArgumentTypeError(f"{s!r}: use a {', '.join(suffixes)} file name")
    p = Path(s)
    parent = p.parent
    if p.is_dir():
        raise argparse.ArgumentTypeError(f"{s!r} is a directory; give a file name")
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"{s!r}: directory {str(parent)!r} does not exist (it is not created)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{s!r}: directory {str(parent)!r} is not writable")
    return s


def plot_path(s: str) -> str:
    return output_path(s, PLOT_SUFFIXES)


# ---------------------------------------------------------------------------- checks needing more than one value


def check_model(arg: str) -> None:
    """A MODEL argument must be an existing file or a zoo name; otherwise say which, with a did-you-mean."""
    p = Path(arg)
    if p.is_file():
        return
    if p.is_dir():
        raise ModelLoadError(f"model {arg!r} is a directory, not an .onnx file")
    try:
        from cnnrt import models

        names = models.names()
    except ImportError:
        names = []
    if arg in names:
        return
    looks_like_file = bool(p.suffix) or os.sep in arg
    hint = did_you_mean(p.stem if looks_like_file else arg, names) if names else ""
    what = f"model file {arg!r} not found" if looks_like_file else f"{arg!r} is neither a model file nor a zoo model"
    raise ModelLoadError(what + hint)


def did_you_mean(name: str, names: list[str]) -> str:
    """'; did you mean the zoo model X?' for the closest names, else the list of zoo models."""
    close = [name] if name in names else difflib.get_close_matches(name, names, n=2, cutoff=0.75)
    if close:
        return f"; did you mean the zoo model {' or '.join(close)}?"
    return f"; zoo models: {', '.join(names)}"


def model_inputs(path) -> dict[str, list]:
    """Graph inputs (not initializers) of an ONNX file and their dims (int, or str when symbolic)."""
    import onnx

    try:
        g = onnx.load(str(path), load_external_data=False).graph
    except Exception as e:  # noqa: BLE001  (protobuf's DecodeError and friends)
        raise ModelLoadError(f"cannot read {str(path)!r} as an ONNX model: {type(e).__name__}: {e}") from e
    inits = {t.name for t in g.initializer}
    return {
        i.name: [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in i.type.tensor_type.shape.dim]
        for i in g.input
        if i.name not in inits
    }


def check_shapes(specs: list[tuple[str, tuple[int, ...]]], path, batch: int | None = None) -> dict[str, tuple]:
    """``--shape`` values against the model's inputs: known names, right rank, fixed dims kept, and a
    batch dimension that agrees with ``--batch`` when both are given. Returns name -> shape."""
    if not specs:
        return {}
    inputs = model_inputs(path)
    shapes: dict[str, tuple] = {}
    for name, dims in specs:
        if name not in inputs:
            raise InputError(f"--shape {name}:...: the model has no input {name!r}; its inputs are {list(inputs)}")
        want = inputs[name]
        text = "x".join(map(str, dims))
        if len(dims) != len(want):
            raise InputError(f"--shape {name}:{text}: input {name!r} has rank {len(want)} ({want})")
        fixed = [(i, w) for i, (d, w) in enumerate(zip(dims, want)) if isinstance(w, int) and w > 0 and d != w]
        if fixed:
            raise InputError(f"--shape {name}:{text}: input {name!r} fixes dims {want} (axis {fixed[0][0]})")
        if batch is not None and dims and dims[0] != batch:
            raise InputError(f"--shape {name}:{text} gives batch {dims[0]} but --batch is {batch}")
        shapes[name] = dims
    return shapes


def simulator_note(backend: str) -> str:
    """' (numba CUDA simulator: ...)' when ``backend`` runs on the simulator, else ''."""
    if "cuda" not in backend:
        return ""
    try:
        from cnnrt.kernels.cuda.device import is_simulator

        sim = is_simulator()
    except Exception:  # noqa: BLE001  (no numba.cuda: the backend reports its own reason)
        return ""
    return " (numba CUDA simulator: every CUDA thread a Python thread, for testing, not speed)" if sim else ""


# ---------------------------------------------------------------------------- shared options


def add_model(p: argparse.ArgumentParser, *, many: bool = False, note: str = "") -> None:
    """The MODEL positional (one, or ``many`` for commands that loop over models)."""
    helptext = MODEL_HELP + (f"; {note}" if note else "")
    if many:
        p.add_argument("models", nargs="+", metavar="MODEL", help=f"one or more: {helptext}")
    else:
        p.add_argument("model", help=helptext)


def add_batch(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--batch",
        type=positive_int,
        default=None,
        help="batch size of a symbolic batch dimension (for the random inputs)",
    )


def add_shape(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--shape",
        type=shape_spec,
        action="append",
        default=[],
        metavar="NAME:DIMS",
        help="shape of input NAME, e.g. input:1x3x224x224, for models with symbolic dims (repeatable)",
    )


def add_threads(p: argparse.ArgumentParser, helptext: str = "cnnrt threads (default: all cores)") -> None:
    p.add_argument("--threads", type=positive_int, default=None, help=helptext)


def add_seed(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the random inputs (default 0)")


def add_inputs(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--input",
        "-i",
        action="append",
        type=input_spec,
        default=[],
        metavar="NAME=FILE",
        help="NAME=FILE.npy, NAME=FILE.npz, or FILE.npz keyed by input names (repeatable); "
        "inputs not given are random (seeded) of the right shape",
    )


def add_rtol(p: argparse.ArgumentParser, when: str = "", per_precision: bool = False) -> None:
    """The agreement bound with onnxruntime, the project's one measure of a right answer (``when``: the option
    that turns the check on, if one does). ``per_precision``: left None when not given, for
    :func:`check_rtol` to pick the bound of the run's precision."""
    default = "1e-3; 2e-1 for bf16" if per_precision else "1e-3"
    p.add_argument(
        "--rtol",
        type=positive_float,
        default=None if per_precision else 1e-3,
        help=f"{when}agreement bound with onnxruntime on max|x-ort|/max(1,max|ort|) (default {default})",
    )


def precision_list(s: str) -> list[str]:
    """Comma-separated precisions, each one cnnrt offers (``f32,bf16``)."""
    from cnnrt.runtime.session_options import PRECISIONS

    items = [x.strip() for x in s.split(",") if x.strip()]
    bad = [x for x in items if x not in PRECISIONS]
    if bad or not items:
        raise argparse.ArgumentTypeError(f"precision {','.join(bad) or s!r} is not one of {', '.join(PRECISIONS)}")
    return list(dict.fromkeys(items))


def add_precision(p: argparse.ArgumentParser, many: bool = False) -> None:
    """``--precision``: what cnnrt computes convolutions in (``many``: a list, each one run)."""
    from cnnrt.runtime.session_options import PRECISIONS

    choices = "|".join(PRECISIONS)
    p.add_argument(
        "--precision",
        type=precision_list if many else _one_precision,
        default=["f32"] if many else "f32",
        metavar="LIST" if many else choices,
        help=("comma-separated, from " if many else "")
        + f"{choices}: bf16 runs convolutions on bfloat16 dot products (AVX-512 BF16) with float32 sums "
        "(default f32)",
    )


def _one_precision(s: str) -> str:
    items = precision_list(s)
    if len(items) != 1:
        raise argparse.ArgumentTypeError(f"one precision, not {s!r}")
    return items[0]


def check_rtol(rtol: float | None, precision: str) -> float:
    """--rtol as given, else the bound of ``precision`` (1e-3 for float32)."""
    from cnnrt.runtime.session_options import PRECISION_RTOL

    return rtol if rtol is not None else PRECISION_RTOL.get(precision, 1e-3)


def add_json(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--json", type=output_path, default=None, metavar="PATH", help=f"write {what} as JSON")


def add_plot(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--plot", type=plot_path, default=None, metavar="PATH", help=f"{what} (.png, .svg or .pdf)")


def add_runs(p: argparse.ArgumentParser, runs: int, what: str, warmup: int | None = 2) -> None:
    p.add_argument("--runs", type=positive_int, default=runs, metavar="N", help=f"{what} (default {runs})")
    if warmup is not None:
        p.add_argument(
            "--warmup", type=nonnegative_int, default=warmup, metavar="N", help=f"untimed runs first (default {warmup})"
        )
