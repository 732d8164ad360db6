"""``cnnrt zoo list`` / ``cnnrt zoo export NAME``: the built-in classic CNNs."""

from __future__ import annotations

from cnnrt.cli import options

HELP = "list or export the built-in classic CNNs"
EPILOG = "example: cnnrt zoo export resnet50 -o resnet50.onnx --opset 13 --batch 1 [--quantize int8]"
DEFAULT_OPSET = 17


def add_arguments(p) -> None:
    zs = p.add_subparsers(dest="zoo_command", metavar="ACTION")
    ls = zs.add_parser("list", help="list zoo models with their input shapes", epilog="example: cnnrt zoo list")
    ls.set_defaults(func=_list)
    ex = zs.add_parser(
        "export", help="export a zoo model to ONNX", epilog="example: cnnrt zoo export lenet5 -o lenet5.onnx"
    )
    ex.add_argument("name", help="zoo model name (see `cnnrt zoo list`)")
    ex.add_argument(
        "-o",
        "--output",
        type=options.output_path,
        default=None,
        help="output path; its directory must exist (default NAME.onnx)",
    )
    ex.add_argument(
        "--opset",
        type=options.positive_int,
        default=DEFAULT_OPSET,
        help=f"ONNX opset to export to (default {DEFAULT_OPSET}; the range both torch and cnnrt support)",
    )
    ex.add_argument(
        "--batch", type=options.positive_int, default=None, help="fixed batch size (default: symbolic 'batch')"
    )
    ex.add_argument(
        "--quantize",
        choices=("int8",),
        default=None,
        help="write the static int8 QDQ model (onnxruntime's quantize_static on random calibration data; "
        "cached next to the float32 export)",
    )
    ex.add_argument(
        "--per-tensor",
        action="store_true",
        help="with --quantize: one weight scale per tensor instead of per output channel",
    )
    ex.set_defaults(func=_export)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def _models():
    from cnnrt.errors import CnnrtError

    try:
        from cnnrt import models
    except ImportError as e:
        raise CnnrtError(f"the zoo needs torch: pip install -e '.[zoo]' ({e})") from None
    return models


def _list(args) -> int:
    models = _models()
    for name in models.names():
        print(f"{name:18s} input {list(models.input_shape(name))}")
    return 0


def _export(args) -> int:
    from cnnrt.errors import CnnrtError

    models = _models()
    if args.name not in models.names():
        raise CnnrtError(f"unknown zoo model {args.name!r}{options.did_you_mean(args.name, models.names())}")
    out = args.output or f"{args.name}{'-' + args.quantize if args.quantize else ''}.onnx"
    if args.quantize:
        import shutil

        from cnnrt.models.quantize import quantize_cached

        shutil.copyfile(quantize_cached(args.name, args.opset, args.batch, per_channel=not args.per_tensor), out)
    else:
        models.export(args.name, out, opset=args.opset, batch=args.batch)
    print(f"wrote {out}")
    return 0
