"""``cnnrt compile MODEL ...``: build a session and run it once per batch size (1 and 8 unless the
model fixes its batch, or --batch says), so that every Numba kernel the model needs is compiled
and written to Numba's on-disk cache; later processes start fast. ``--jobs N`` first has N
worker processes compile the kernels side by side (tools/compile_workers.py).

Prints the session build split (import, passes, planning, kernels), the first run (where
the JIT happens), a second run for comparison, each jitted function with how many of its
type signatures were compiled now and how many were loaded from the cache, the total time
and the cache folder."""

from __future__ import annotations

import json
import os
import sys
import time

from cnnrt.cli import options

EPILOG = """examples:
  cnnrt compile resnet18
  cnnrt compile model.onnx --batch 8 --json compile.json
  cnnrt compile lenet5 resnet50 mobilenet_v2 --jobs 2"""


HELP = "compile every kernel a model needs into the on-disk cache, and say how long it took"


DEFAULT_BATCHES = [1, 8]  # a larger batch can pick other algorithms and parallel kernel twins


def _batches(text: str) -> list[int]:
    import argparse

    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        vals = []
    if not vals or any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    return vals


def add_arguments(p) -> None:
    options.add_model(p, many=True)
    p.add_argument(
        "--batch",
        type=_batches,
        default=None,
        help="batch sizes to compile for, comma-separated (default 1,8; a model with a fixed batch: that one)",
    )
    options.add_threads(p)
    p.add_argument(
        "--jobs", type=int, default=1, help="worker processes compiling kernels side by side first (default 1)"
    )
    options.add_json(p, "what was compiled")


def jit_functions() -> list[tuple[str, object]]:
    """(qualified name, dispatcher) of every Numba-jitted function in loaded cnnrt modules."""
    try:
        from numba.core.dispatcher import Dispatcher
    except ImportError:  # pragma: no cover
        return []
    found: dict[int, tuple[str, object]] = {}
    for modname, mod in list(sys.modules.items()):
        if not modname.startswith("cnnrt") or mod is None:
            continue
        for attr, obj in list(vars(mod).items()):
            if isinstance(obj, Dispatcher) and id(obj) not in found:
                if getattr(obj, "py_func", None) is not None and obj.py_func.__module__ != modname:
                    continue  # an import of a function defined elsewhere
                found[id(obj)] = (f"{modname}.{attr}", obj)
    return sorted(found.values())


def _jit_counts() -> dict[str, dict]:
    out = {}
    for name, d in jit_functions():
        stats = getattr(d, "stats", None)
        hits = sum(stats.cache_hits.values()) if stats else 0
        misses = sum(stats.cache_misses.values()) if stats else 0
        out[name] = {
            "signatures": len(d.signatures),
            "cache_hits": hits,
            "cache_misses": misses,
            "cache_path": getattr(stats, "cache_path", None),
        }
    return out


def run(args) -> int:
    import cnnrt
    from cnnrt.runtime.threads import default_threads
    from cnnrt.tools.compile_workers import compile_in_workers
    from cnnrt.tools.modelsource import fixed_batch, random_feeds, resolve_model
    from cnnrt.tools.progress import CompileProgress, Spinner

    threads = args.threads or default_threads()
    reports = []
    t_all = time.perf_counter()
    for model in args.models:
        path = resolve_model(model)
        t0 = time.perf_counter()
        with Spinner(f"building {model}"):
            sess = cnnrt.InferenceSession(path, threads=args.threads, tiered=False)  # compile all now
        build_s = time.perf_counter() - t0
        fixed = fixed_batch(sess)
        batches = [fixed] if fixed else args.batch or DEFAULT_BATCHES
        for batch in batches:
            workers_s = 0.0
            if args.jobs > 1:
                t0 = time.perf_counter()
                with Spinner(f"compiling {model} batch {batch} in {args.jobs} processes"):
                    compile_in_workers(str(path), batch, threads, args.jobs)
                workers_s = time.perf_counter() - t0
            before = _jit_counts()
            feeds = random_feeds(sess, batch=batch)
            t0 = time.perf_counter()
            with CompileProgress(f"first run of {model} batch {batch}"):
                sess.run(None, feeds)
            first_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            sess.run(None, feeds)
            second_ms = (time.perf_counter() - t0) * 1e3
            rep = _report(model, path, batch, build_s, sess, before, first_s, second_ms, workers_s)
            reports.append(rep)
            _print(rep)
            build_s = sess.build_timings["import"]  # a second batch re-plans; the load is not repeated
    total_s = time.perf_counter() - t_all
    cache_dir = _cache_dir()
    print(
        f"total    {total_s:.1f} s for {len(args.models)} model(s), "
        f"{sum(r['compiled'] for r in reports)} signature(s) compiled here"
        + (f" (after {args.jobs} worker processes)" if args.jobs > 1 else "")
    )
    print(f"cache    {cache_dir}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cache_dir": cache_dir, "total_s": total_s, "jobs": args.jobs, "models": reports}, f, indent=1)
    return 0


def _report(model, path, batch, build_s, sess, before, first_s, second_ms, workers_s) -> dict:
    after = _jit_counts()
    kernels = []
    for name, a in after.items():
        b = before.get(name, {"signatures": 0, "cache_hits": 0, "cache_misses": 0})
        new_sigs = a["signatures"] - b["signatures"]
        compiled = a["cache_misses"] - b["cache_misses"]
        loaded = a["cache_hits"] - b["cache_hits"]
        if new_sigs or compiled or loaded:
            kernels.append({"function": name, "signatures": new_sigs, "compiled": compiled, "from_cache": loaded})
    return {
        "model": model,
        "path": str(path),
        "batch": batch,
        "build_s": build_s,
        "build": sess.build_timings,
        "workers_s": workers_s,
        "first_run_s": first_s,
        "second_run_ms": second_ms,
        "ops": sess.graph.op_counts(),
        "steps": len(sess.graph.nodes),
        "kernels": kernels,
        "compiled": sum(k["compiled"] for k in kernels),
        "from_cache": sum(k["from_cache"] for k in kernels),
    }


def _print(rep: dict) -> None:
    tm, ops = rep["build"], rep["ops"]
    print(
        f"model    {rep['model']} ({rep['path']}), batch {rep['batch']}: {rep['steps']} steps, "
        + ", ".join(f"{k}x{v}" for k, v in sorted(ops.items()))
    )
    workers = f"workers {rep['workers_s']:.2f} s; " if rep["workers_s"] else ""
    print(
        f"build    {rep['build_s']:.2f} s (import {tm['import']:.2f}, passes {tm['passes']:.2f}, "
        f"planning {tm['planning']:.2f}, kernels {tm['kernels']:.2f}); {workers}first run (JIT) "
        f"{rep['first_run_s']:.2f} s; second run {rep['second_run_ms']:.2f} ms"
    )
    for k in rep["kernels"]:
        how = []
        if k["compiled"]:
            how.append(f"{k['compiled']} compiled")
        if k["from_cache"]:
            how.append(f"{k['from_cache']} from cache")
        if not how:
            how.append("compiled (not cacheable)")
        print(f"  jit    {k['function']}: {k['signatures']} signature(s), {', '.join(how)}")
    print(f"kernels  {rep['compiled']} signature(s) compiled and cached now, {rep['from_cache']} loaded from cache")


def _cache_dir() -> str:
    d = os.environ.get("NUMBA_CACHE_DIR")
    if d:
        return d
    paths = {v.get("cache_path") for v in _jit_counts().values() if v.get("cache_path")}
    return ", ".join(sorted(paths)) if paths else "(numba default: __pycache__ beside each kernel module)"
