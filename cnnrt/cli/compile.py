"""``cnnrt compile MODEL ...``: build a session and run it once, so that every Numba kernel the
model needs is compiled and written to Numba's on-disk cache; later processes start fast.

Prints the session build split (import, passes, planning, kernels), the first run (where
the JIT happens), a second run for comparison, and each jitted function with how many of its
type signatures were compiled now and how many were loaded from the cache."""

from __future__ import annotations

import json
import sys
import time

from cnnrt.cli import options

EPILOG = """examples:
  cnnrt compile resnet18
  cnnrt compile model.onnx --batch 8 --json compile.json
  cnnrt compile lenet5 resnet50 mobilenet_v2"""


HELP = "build and run once to pre-warm Numba's on-disk kernel cache"


def add_arguments(p) -> None:
    options.add_model(p, many=True)
    options.add_batch(p)
    options.add_threads(p)
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
    from cnnrt.tools.modelsource import random_feeds, resolve_model
    from cnnrt.tools.progress import Spinner

    reports = []
    for model in args.models:
        before = _jit_counts()
        path = resolve_model(model)
        t0 = time.perf_counter()
        with Spinner(f"building {model}"):
            sess = cnnrt.InferenceSession(path, threads=args.threads)
        build_s = time.perf_counter() - t0
        feeds = random_feeds(sess, batch=args.batch)
        t0 = time.perf_counter()
        with Spinner(f"first run of {model} (JIT)"):
            sess.run(None, feeds)
        first_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        sess.run(None, feeds)
        second_ms = (time.perf_counter() - t0) * 1e3
        after = _jit_counts()
        kernels = []
        for name, a in after.items():
            b = before.get(name, {"signatures": 0, "cache_hits": 0, "cache_misses": 0})
            new_sigs = a["signatures"] - b["signatures"]
            compiled = a["cache_misses"] - b["cache_misses"]
            loaded = a["cache_hits"] - b["cache_hits"]
            if new_sigs or compiled or loaded:
                kernels.append({"function": name, "signatures": new_sigs, "compiled": compiled, "from_cache": loaded})
        tm = sess.build_timings
        ops = sess.graph.op_counts()
        rep = {
            "model": model,
            "path": str(path),
            "batch": next(iter(feeds.values())).shape[0] if feeds else None,
            "build_s": build_s,
            "build": tm,
            "first_run_s": first_s,
            "second_run_ms": second_ms,
            "ops": ops,
            "steps": len(sess.graph.nodes),
            "kernels": kernels,
            "compiled": sum(k["compiled"] for k in kernels),
            "from_cache": sum(k["from_cache"] for k in kernels),
        }
        reports.append(rep)
        print(
            f"model    {model} ({path}), batch {rep['batch']}: {rep['steps']} steps, "
            + ", ".join(f"{k}x{v}" for k, v in sorted(ops.items()))
        )
        print(
            f"build    {build_s:.2f} s (import {tm['import']:.2f}, passes {tm['passes']:.2f}, "
            f"planning {tm['planning']:.2f}, kernels {tm['kernels']:.2f}); first run (JIT) {first_s:.2f} s; "
            f"second run {second_ms:.2f} ms"
        )
        for k in kernels:
            how = []
            if k["compiled"]:
                how.append(f"{k['compiled']} compiled")
            if k["from_cache"]:
                how.append(f"{k['from_cache']} from cache")
            if not how:
                how.append("compiled (not cacheable)")
            print(f"  jit    {k['function']}: {k['signatures']} signature(s), {', '.join(how)}")
        print(f"kernels  {rep['compiled']} signature(s) compiled and cached now, {rep['from_cache']} loaded from cache")
    cache_dir = _cache_dir()
    print(f"cache    {cache_dir}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cache_dir": cache_dir, "models": reports}, f, indent=1)
    return 0


def _cache_dir() -> str:
    import os

    d = os.environ.get("NUMBA_CACHE_DIR")
    if d:
        return d
    paths = {v.get("cache_path") for v in _jit_counts().values() if v.get("cache_path")}
    return ", ".join(sorted(paths)) if paths else "(numba default: __pycache__ beside each kernel module)"
