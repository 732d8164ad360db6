"""``cnnrt inspect MODEL``: the optimised graph, what each pass did, and where the memory goes."""

from __future__ import annotations

from cnnrt.cli import options

HELP = "show the optimised graph, the pass log and the memory plan"
EPILOG = (
    "examples:\n  cnnrt inspect resnet50\n  cnnrt inspect resnet50 -o resnet50.html --profile\n"
    "  cnnrt inspect resnet50 --format json -o resnet50.json\n"
    "  cnnrt inspect googlenet -o googlenet.svg --memory-plot googlenet-mem.png\n"
    "without --format, -o's suffix names the format (.txt .json .dot .gv .svg .png .html)"
)


def add_arguments(p) -> None:
    from cnnrt.tools.inspect import FORMATS

    options.add_model(p)
    p.add_argument("--opt-level", type=int, default=2, choices=(0, 1, 2), help="0: as imported (default 2: all)")
    p.add_argument("--disable", action="append", default=[], metavar="PASS", help="disable a pass (repeatable)")
    p.add_argument(
        "--batch", type=options.positive_int, default=1, help="batch size the graph is built for (default 1)"
    )
    p.add_argument(
        "--format",
        choices=FORMATS,
        default=None,
        help="text (default), json, dot (graphviz), svg/png (the graph drawn), html (the interactive inspector)",
    )
    options.add_precision(p)
    p.add_argument("-o", "--output", help="write here instead of stdout (required for svg, png and html)")
    p.add_argument("--json", metavar="PATH", help="also write the JSON report here")
    p.add_argument("--memory-plot", metavar="PATH", help="draw the memory plan (.png, .svg or .pdf)")
    p.add_argument(
        "--profile",
        action="store_true",
        help="html: time every node on random inputs and colour the graph by its median time",
    )
    p.add_argument("--runs", type=options.positive_int, default=10, help="profiled runs for --profile (default 10)")


def run(args) -> int:
    from pathlib import Path

    import cnnrt
    from cnnrt.errors import CnnrtError
    from cnnrt.tools.inspect import check_writable, output_format, report, to_dot, to_json, to_text
    from cnnrt.tools.modelsource import resolve_model

    fmt = output_format(args.format, args.output)
    if args.batch < 1:
        raise CnnrtError(f"--batch must be at least 1, not {args.batch}")
    if args.profile and fmt != "html":
        raise CnnrtError("--profile colours the html inspector: give -o PAGE.html (or --format html)")
    if args.runs < 1:
        raise CnnrtError(f"--runs must be at least 1, not {args.runs}")
    if args.memory_plot:
        from cnnrt.tools.plots import check_picture_path

        check_picture_path(args.memory_plot, "--memory-plot")
    for option, path in (("-o", args.output), ("--json", args.json), ("--memory-plot", args.memory_plot)):
        if path:
            check_writable(path, option)
    path = resolve_model(args.model)
    sess = cnnrt.InferenceSession(
        path, opt_level=args.opt_level, disabled_passes=args.disable, precision=args.precision
    )
    if args.batch != 1:
        sess.prepare(batch=args.batch)
    rep = report(sess)
    if args.json:
        with open(args.json, "w") as f:
            f.write(to_json(rep))
    if args.memory_plot:
        from cnnrt.tools.plots import memory_chart

        memory_chart(rep["memory"], args.memory_plot)
    if fmt in ("svg", "png"):
        from cnnrt.tools.inspect import fused_ids, graph_view
        from cnnrt.tools.plots import graph_chart

        graph_chart(*graph_view(rep), args.output, fused_ids(rep))
    elif fmt == "html":
        from cnnrt.tools.inspect_html import write_html

        write_html(sess, rep, args.output, Path(args.model).name, profile_runs=args.runs if args.profile else None)
    else:
        text = {"text": to_text, "json": to_json, "dot": to_dot}[fmt](rep)
        if not args.output:
            print(text)
            return 0
        with open(args.output, "w") as f:
            f.write(text + "\n")
    print(f"wrote {args.output}")
    return 0
