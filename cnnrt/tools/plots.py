"""Charts for ``cnnrt bench --plot`` and ``cnnrt profile --plot`` (matplotlib, Agg backend).

The file type follows the extension (.png, .svg, .pdf); matplotlib is an optional
dependency (``pip install -e '.[plot]'``).
"""

from __future__ import annotations

from pathlib import Path

from cnnrt.errors import CnnrtError


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise CnnrtError(f"--plot needs matplotlib: pip install -e '.[plot]' ({e})") from None
    return plt


def _check_ext(path: str | Path) -> None:
    ext = Path(path).suffix.lower()
    if ext not in (".png", ".svg", ".pdf"):
        raise CnnrtError(f"--plot {str(path)!r}: use a .png, .svg or .pdf file name")


def bench_chart(records: list[dict], path: str | Path) -> None:
    """Grouped bars: median ms per (model, batch, threads), one bar per backend, log scale, with
    p10-p90 error bars.

    WRONG / skipped / failed results have no bar; a hatched marker at the axis says why.
    """
    _check_ext(path)
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
    _check_ext(path)
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
