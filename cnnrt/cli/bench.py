"""``cnnrt bench MODEL ...``: time cnnrt against onnxruntime (and PyTorch) over batch and thread
settings, after checking that every backend's answer agrees with onnxruntime's.

A backend whose outputs differ from onnxruntime's by more than --rtol (max|x-ort|/max(1,|ort|))
shows WRONG instead of a time, and the exit code is 1. Backends are timed alternately in one
process; the table gives min / median / p90 in ms and the ratio of medians to onnxruntime
(below 1 is faster). onnxruntime always runs: it is the reference for answers and times."""

from __future__ import annotations

import argparse
import json
import sys

from cnnrt.cli import options

EPILOG = """examples:
  cnnrt bench lenet5 resnet18 --batch 1,8 --threads 1,2 --runs 20
  cnnrt bench model.onnx --backends cnnrt,onnxruntime --json bench.json --plot bench.png
  cnnrt bench resnet18 --backends cnnrt,cnnrt-cuda,onnxruntime,onnxruntime-cuda,torch
  cnnrt bench resnet50 --backends cnnrt,onnxruntime,onnxruntime-nchw   # ort without NCHWc"""


def _int_list(s: str) -> list[int]:
    try:
        vals = [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None
    if not vals or any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {s!r}")
    return vals


HELP = "time cnnrt vs onnxruntime (and torch) after checking their answers agree"


def add_arguments(p) -> None:
    from cnnrt.tools.bench import BACKENDS, DEFAULT_BACKENDS

    options.add_model(p, many=True)
    p.add_argument(
        "--backends",
        default=",".join(DEFAULT_BACKENDS),
        help=f"comma-separated, from {', '.join(BACKENDS)} (default {','.join(DEFAULT_BACKENDS)})",
    )
    p.add_argument("--batch", type=_int_list, default=[1], help="comma-separated batch sizes (default 1)")
    p.add_argument("--threads", type=_int_list, default=None, help="comma-separated thread counts (default: all cores)")
    p.add_argument("--runs", type=int, default=20, help="timed runs per backend (default 20)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs per backend first (default 2)")
    p.add_argument("--max-seconds", type=float, default=None, help="stop timing a case after this long (>=3 runs)")
    options.add_rtol(p)
    options.add_seed(p)
    options.add_json(p, "the records (a list)")
    p.add_argument("--plot", default=None, metavar="PATH", help="bar chart of medians (.png or .svg)")
    p.add_argument(
        "--cold", action="store_true", help="time start-up instead: a cold and a warm start in fresh processes"
    )


def run(args) -> int:
    from cnnrt.errors import CnnrtError
    from cnnrt.tools.bench import (
        BACKENDS,
        DEFAULT_BACKENDS,
        HEADER,
        REFERENCE,
        format_rows,
        geomean_summary,
        records_for,
    )
    from cnnrt.tools.modelsource import is_zoo_name, resolve_model
    from cnnrt.tools.progress import Progress
    from cnnrt.tools.timing import cpu_count

    if args.cold:
        from cnnrt.tools.coldstart import bench_cold

        return bench_cold(args.models, args.batch, args.threads or [cpu_count()], args.json)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise CnnrtError(f"unknown backend(s) {unknown}; choose from {', '.join(BACKENDS)}")
    explicit = set() if args.backends == ",".join(DEFAULT_BACKENDS) else set(backends)
    if REFERENCE not in backends:
        print(f"note: {REFERENCE} added: it is the reference for answers and ratios", file=sys.stderr)
    backends = [REFERENCE] + [b for b in dict.fromkeys(backends) if b != REFERENCE]
    threads_list = args.threads or [cpu_count()]
    records: list[dict] = []
    failed = False
    total = len(args.models) * len(threads_list) * len(args.batch)
    print(HEADER, flush=True)
    with Progress(total, "bench") as bar:
        for model in args.models:
            zoo = model if is_zoo_name(model) else None
            path = resolve_model(model)
            for threads in threads_list:
                cache: dict = {}  # sessions reused across batch sizes
                for batch in args.batch:
                    bar.set_note(f"{model} batch {batch} threads {threads}")
                    results = _bench_setting(args, backends, path, zoo, batch, threads, cache)
                    recs = records_for(model, batch, threads, results)
                    records.extend(recs)
                    for r in recs:
                        if r["status"] in ("WRONG", "error") or (r["status"] == "skipped" and r["backend"] in explicit):
                            failed = True
                    bar.close()  # clear the progress line before printing rows
                    for row in format_rows(recs):
                        print(row, flush=True)
                    bar.update()
    summary = geomean_summary(records)
    if summary:
        print()
        print("geometric mean of median ratios vs onnxruntime over models:")
        for s in summary:
            print(
                f"  batch {s['batch']:3d} threads {s['threads']:2d}  {s['backend']:16s} "
                f"{s['geomean_ratio_vs_onnxruntime']:.2f}x  ({s['models']} model{'s' if s['models'] != 1 else ''})"
            )
    wrong = [r for r in records if r["status"] == "WRONG"]
    if wrong:
        print(
            f"cnnrt: error: {len(wrong)} result(s) WRONG (outputs disagree with onnxruntime beyond "
            f"{args.rtol:g}); their times are not reported",
            file=sys.stderr,
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=1)
    if args.plot:
        from cnnrt.tools.plots import bench_chart

        bench_chart(records, args.plot)
        print(f"wrote {args.plot}")
    return 1 if failed else 0


def _bench_setting(args, backends, path, zoo, batch, threads, cache) -> dict:
    """Results per backend for one model at one (batch, threads); never raises for a backend."""
    from cnnrt.tools.bench import REFERENCE, BackendResult, Skip, bench_case, make_runner
    from cnnrt.tools.modelsource import fixed_batch, random_feeds

    def all_(status, note):
        return {b: BackendResult(b, status, note=note) for b in backends}

    try:
        make_runner(REFERENCE, path, zoo, {}, threads, cache)  # builds the onnxruntime session
    except Exception as e:  # noqa: BLE001
        if args.debug:
            raise
        return all_("error", f"onnxruntime cannot load the model: {type(e).__name__}: {e}".splitlines()[0])
    ref_sess = cache[REFERENCE]
    fb = fixed_batch(ref_sess)
    if fb is not None and fb != batch:
        return all_("skipped", f"the model fixes batch {fb}")
    feeds = random_feeds(ref_sess, batch=batch, seed=args.seed)
    runners, other = {}, {}
    for b in backends:
        try:
            runners[b] = make_runner(b, path, zoo, feeds, threads, cache)
        except Skip as e:
            other[b] = BackendResult(b, "skipped", note=str(e))
        except Exception as e:  # noqa: BLE001
            if args.debug:
                raise
            other[b] = BackendResult(b, "error", note=f"{type(e).__name__}: {e}".splitlines()[0])
    results = bench_case(
        runners, REFERENCE, runs=args.runs, warmup=args.warmup, rtol=args.rtol, max_seconds=args.max_seconds
    )
    results.update(other)
    return {b: results[b] for b in backends if b in results}
