"""``cnnrt inspect MODEL``: the optimised graph, what each pass did, and where the memory goes."""

from __future__ import annotations

from cnnrt.cli import options

HELP = "show the optimised graph, the pass log and the memory plan"
EPILOG = (
    "examples:\n  cnnrt inspect resnet50\n  cnnrt inspect resnet50 --format json -o resnet50.json\n"
    "  cnnrt inspect googlenet --format svg -o googlenet.svg --memory-plot googlenet-mem.png"
)


def add_arguments(p) -> None:
    options.add_model(p)
    p.add_argument("--opt-level", type=int, default=2, choices=(0, 1, 2))
    p.add_argument("--disable", action="append", default=[], metavar="PASS", help="disable a pass (repeatable)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--format", choices=("text", "json", "dot", "svg", "png"), default="text")
    p.add_argument("-o", "--output", help="write here instead of stdout (required for svg/png)")
    p.add_argument("--json", metavar="PATH", help="also write the JSON report here")
    p.add_argument("--memory-plot", metavar="PATH", help="draw the memory plan (PNG or SVG)")


def run(args) -> int:
    import cnnrt
    from cnnrt.errors import CnnrtError
    from cnnrt.tools.inspect import draw_graph, draw_memory, report, to_dot, to_json, to_text
    from cnnrt.tools.modelsource import resolve_model

    path = resolve_model(args.model)
    sess = cnnrt.InferenceSession(path, opt_level=args.opt_level, disabled_passes=args.disable)
    if args.batch != 1:
        sess.prepare(batch=args.batch)
    rep = report(sess)
    if args.json:
        with open(args.json, "w") as f:
            f.write(to_json(rep))
    if args.memory_plot:
        draw_memory(rep, args.memory_plot)
    if args.format in ("svg", "png"):
        if not args.output:
            raise CnnrtError(f"--format {args.format} needs -o PATH")
        draw_graph(sess, args.output)
        print(f"wrote {args.output}")
        return 0
    text = {"text": to_text, "json": to_json, "dot": to_dot}[args.format](rep)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")
        print(f"wrote {args.output}")
    else:
        print(text)
    return 0
