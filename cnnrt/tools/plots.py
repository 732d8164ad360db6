"""Charts for ``cnnrt bench --plot``, ``cnnrt profile --plot`` and ``cnnrt inspect`` (the graph
and the memory plan), drawn with matplotlib's Agg backend so no system graphviz is needed.

The file type follows the extension (.png, .svg, .pdf); SVG text stays text (searchable,
selectable). matplotlib is an optional dependency (``pip install -e '.[plot]'``).
"""

from __future__ import annotations

from pathlib import Path

from cnnrt.errors import CnnrtError

PICTURE_SUFFIXES = (".png", ".svg", ".pdf")


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise CnnrtError(f"--plot needs matplotlib: pip install -e '.[plot]' ({e})") from None
    plt.rcParams["svg.fonttype"] = "none"
    return plt


def check_picture_path(path: str | Path, option: str = "--plot") -> None:
    """Fail unless ``path`` names a picture matplotlib writes (called before any work is done)."""
    ext = Path(path).suffix.lower()
    if ext not in PICTURE_SUFFIXES:
        raise CnnrtError(f"{option} {str(path)!r}: use a .png, .svg or .pdf file name")


def bench_chart(records: list[dict], path: str | Path) -> None:
    """Grouped bars: median ms per (model, batch, threads), one bar per backend, log scale, with
    p10-p90 error bars.

    WRONG / skipped / failed results have no bar; a hatched marker at the axis says why.
    """
    check_picture_path(path)
    plt = _pyplot()
    cases = list(dict.fromkeys((r["model"], r["batch"], r["threads"]) for r in records))
    backends = list(dict.fromkeys(r["backend"] for r in records))
    by = {(r["model"], r["batch"], r["threads"], r["backend"]): r for r in records}
    width = 0.8 / max(len(backends), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(cases) * max(len(backends), 2) * 0.5), 4.5))
    for j, be in enumerate(backends):
        timed = [(i, by[(*c, be)]) for i, c in enumerate(cases) if by.get((*c, be), {}).get("median_ms")]
        if not timed:
            continue
        xs = [i + (j - (len(backends) - 1) / 2) * width for i, _ in timed]
        med = [r["median_ms"] for _, r in timed]
        # whiskers from p10 to p90 (a record without them gets none)
        err = [
            [m - (r.get("p10_ms") or m) for m, (_, r) in zip(med, timed)],
            [(r.get("p90_ms") or m) - m for m, (_, r) in zip(med, timed)],
        ]
        ax.bar(xs, med, width, label=be, color=f"C{j % 10}", yerr=err, capsize=2, error_kw={"elinewidth": 0.8})
        for x, (_, r) in zip(xs, timed):
            if r.get("ratio_vs_onnxruntime") is not None and be != "onnxruntime":
                ax.annotate(
                    f"{r['ratio_vs_onnxruntime']:.2f}x",
                    (x, max(r["median_ms"], r.get("p90_ms") or 0)),  # above the whisker
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
    for i, c in enumerate(cases):
        for j, be in enumerate(backends):
            r = by.get((*c, be))
            if r is not None and r["status"] == "WRONG":
                x = i + (j - (len(backends) - 1) / 2) * width
                ax.annotate(
                    "WRONG",
                    (x, 0.02),
                    xycoords=("data", "axes fraction"),
                    rotation=90,
                    ha="center",
                    fontsize=7,
                    color="red",
                )
    ax.set_xticks(range(len(cases)))
    ax.set_xticklabels([f"{m}\nb{b} t{t}" for m, b, t in cases], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("median latency (ms, log scale)")
    ax.set_title("cnnrt bench: median, p10-p90 whiskers, ratio of medians to onnxruntime", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def profile_chart(steps: list[dict], path: str | Path, top: int = 30, title: str = "") -> None:
    """Horizontal bars of the ``top`` slowest steps (ms), labelled with op and GFLOP/s."""
    check_picture_path(path)
    plt = _pyplot()
    rows = sorted(steps, key=lambda s: s["ms"], reverse=True)[:top][::-1]
    fig, ax = plt.subplots(figsize=(9, max(2.5, 0.28 * len(rows) + 1.2)))
    ax.barh(range(len(rows)), [s["ms"] for s in rows], color="tab:blue")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{s['name'][:40]} ({s['op']})" for s in rows], fontsize=7)
    for i, s in enumerate(rows):
        label = f"{s['share'] * 100:.1f}%"
        if s.get("gflops"):
            label += f", {s['gflops']:.1f} GFLOP/s"
        ax.annotate(label, (s["ms"], i), xytext=(3, 0), textcoords="offset points", va="center", fontsize=7)
    ax.set_xlabel("median time per run (ms)")
    ax.set_title(title or f"cnnrt profile: top {len(rows)} steps")
    ax.margins(x=0.25)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


_BOX_COLOURS = {"input": "#dff0d8", "output": "#f2dede", "fused": "#d4e4f7", "node": "#ffffff"}


def _curve(points: list[tuple[float, float]]):
    """A matplotlib Path through ``points``: cubic segments leaving and entering vertically."""
    from matplotlib.path import Path as MplPath

    verts, codes = [points[0]], [MplPath.MOVETO]
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        ym = (y0 + y1) / 2
        verts += [(x0, ym), (x1, ym), (x1, y1)]
        codes += [MplPath.CURVE4] * 3
    return MplPath(verts, codes)


def graph_chart(boxes: list[dict], edges: list[dict], path: str | Path, fused: set[str] = frozenset()) -> None:
    """The graph as cnnrt.tools.inspect.graph_view describes it, laid out by cnnrt.tools.graph_layout:
    boxes with op, name and epilogue (``fused`` ids shaded), graph inputs and outputs, each tensor's
    shape on its edges just below its producer; long (skip) edges route around the boxes they pass.
    One data unit is one pixel of the layout at 72 dpi, so the layout's font metrics hold."""
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    from cnnrt.tools.graph_layout import EDGE_LABEL_DY, LINE_H, box_size, layered_layout

    check_picture_path(path, "-o")
    plt = _pyplot()
    sizes = {b["id"]: box_size(b["lines"]) for b in boxes}
    lay = layered_layout(sizes, [(e["src"], e["dst"]) for e in edges])
    margin = 20.0
    w, h = lay.width + 2 * margin, lay.height + 2 * margin
    fig = plt.figure(figsize=(w / 72, h / 72))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(-margin, lay.width + margin)
    ax.set_ylim(lay.height + margin, -margin)
    ax.set_axis_off()
    labelled: dict[str, int] = {}
    for e, route in zip(edges, lay.routes):
        ax.add_patch(
            FancyArrowPatch(path=_curve(route), arrowstyle="-|>", mutation_scale=9, color="#555", lw=0.9, zorder=1)
        )
        if e["src"].startswith("in:") or (e["src"], e["tensor"]) in labelled:
            continue
        k = labelled[(e["src"], e["tensor"])] = sum(1 for s, _ in labelled if s == e["src"])
        (x0, y0) = route[0]
        ax.text(
            x0,
            y0 + EDGE_LABEL_DY * (k + 1),
            e["label"],
            fontsize=9,
            family="monospace",
            color="#345",
            ha="center",
            va="center",
            zorder=3,
            bbox=dict(boxstyle="square,pad=0.1", fc="white", ec="none", alpha=0.85),
        )
    for b in boxes:
        (x, y), (bw, bh) = lay.pos[b["id"]], sizes[b["id"]]
        kind = "fused" if b["id"] in fused else b["kind"]
        style = "round,pad=0,rounding_size=12" if kind in ("input", "output") else "round,pad=0,rounding_size=3"
        ax.add_patch(
            FancyBboxPatch((x - bw / 2, y - bh / 2), bw, bh, boxstyle=style, fc=_BOX_COLOURS[kind], ec="#333", lw=0.8)
        )
        for k, line in enumerate(b["lines"]):
            ax.text(
                x,
                y - bh / 2 + 6 + (k + 0.5) * LINE_H,
                line,
                fontsize=11,
                family="monospace",
                ha="center",
                va="center",
                weight="bold" if k == 0 else "normal",
                color="#000" if k == 0 else "#444",
                zorder=4,
            )
    # Agg refuses images above 2**16 pixels a side: a very deep graph gets a lower resolution
    dpi = min(100.0, 60000.0 / max(w, h) * 72)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def _op_colours(ops: list[str]) -> dict[str, tuple]:
    """A distinct colour per producer op: tab10's, then tab20's lighter halves, then tab20b's."""
    plt = _pyplot()
    palette = [plt.get_cmap("tab10")(i) for i in range(10)]
    palette += [plt.get_cmap("tab20")(i) for i in range(1, 20, 2)] + [plt.get_cmap("tab20b")(i) for i in range(20)]
    return {op: palette[k % len(palette)] for k, op in enumerate(ops)}


def memory_chart(memory: dict, path: str | Path) -> None:
    """The memory plan of cnnrt.tools.inspect.report: each arena region a rectangle over the steps it
    lives (x) at its offset (y), coloured by the op that produces it (legend), named by its tensor, or
    by the end of its producer's name where the tensor's name does not fit; below, the bytes live at
    each step against the arena size (their peak is the lower bound any plan needs, so the gap
    between the two lines is what the placement wastes)."""
    check_picture_path(path, "--memory-plot")
    plt = _pyplot()
    from matplotlib.patches import Rectangle

    from cnnrt.tools.inspect import short_name

    mib = 2**20
    roots = sorted((b for b in memory["buffers"] if not b["alias"]), key=lambda b: (b["first_step"], b["offset"]))
    steps = len(memory["live_bytes"])
    colours = _op_colours(list(dict.fromkeys(b["producer_op"] for b in roots)))
    width_in = min(40.0, max(10.0, 0.12 * steps))
    fig, (ax, live_ax) = plt.subplots(
        2, 1, figsize=(width_in, 8), sharex=True, gridspec_kw={"height_ratios": (3, 1)}, layout="constrained"
    )
    arena = max(memory["arena_bytes"], 1) / mib
    ax.set_xlim(-1.5, steps + 0.5)
    ax.set_ylim(0, arena * 1.02)
    ax.legend(
        handles=[Rectangle((0, 0), 1, 1, fc=c, ec="black", lw=0.3) for c in colours.values()],
        labels=[f"made by {op}" for op in colours],
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
        fontsize=8,
        title="region",
    )
    ax.set_ylabel("arena offset (MiB)")
    live = [v / mib for v in memory["live_bytes"]]
    peak_step = max(range(len(live)), key=live.__getitem__) if live else 0
    live_ax.step(range(len(live)), live, where="mid", color="black", lw=1, label="live bytes")
    live_ax.axhline(arena, color="tab:red", ls="--", lw=0.8, label=f"arena {arena:.2f} MiB")
    peak = memory["peak_live_bytes"] / mib
    live_ax.plot([peak_step], [peak], "o", color="tab:red", ms=4, label=f"peak live {peak:.2f} MiB (step {peak_step})")
    live_ax.set_ylim(0, arena * 1.15)
    live_ax.set_xlabel("step")
    live_ax.set_ylabel("live (MiB)")
    live_ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    ax.set_title(
        f"memory plan: arena {arena:.2f} MiB = {memory['arena_bytes'] / max(1, memory['peak_live_bytes']):.3f}× "
        f"the peak of live bytes; without a plan {memory['naive_bytes'] / mib:.2f} MiB"
    )
    fig.canvas.draw()  # the axes' final size, to decide which names fit; then the layout stays
    fig.set_layout_engine("none")
    px_per_step = ax.bbox.width / (steps + 2)
    px_per_mib = ax.bbox.height / (arena * 1.02)
    char_px = 7 * 0.602 * fig.dpi / 72  # a 7 pt monospace character
    for b in roots:
        x0, span = b["first_step"] - 0.5, b["last_step"] - b["first_step"] + 1
        y0, size = b["offset"] / mib, b["region_bytes"] / mib
        ax.add_patch(Rectangle((x0, y0), span, size, fc=colours[b["producer_op"]], ec="black", lw=0.3))
        room = int((span * px_per_step - 4) / char_px)
        name = b["root"] if len(b["root"]) <= room else short_name(b["producer"] or "", room)
        if room >= 8 and size * px_per_mib > 9:
            ax.text(x0 + span / 2, y0 + size / 2, name, fontsize=7, family="monospace", ha="center", va="center")
    fig.savefig(path)
    plt.close(fig)
