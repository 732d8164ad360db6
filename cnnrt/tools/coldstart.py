"""Start-up time, measured the way a new user meets it: a fresh process per measurement.

``cold``: an empty kernel cache (a new NUMBA_CACHE_DIR), so every kernel the model needs is
compiled; ``warm``: a second process on the cache the cold one filled. Each child reports
the time from its own start (before ``import cnnrt``) to the first result, split into the
import, the session build and the first run, and the parent adds the wall time it saw (the
interpreter's own start included) and, for the cold process, how long it ran in all (a
tiered start keeps compiling after its first result). ``CNNRT_TIERED`` is on in the
children unless the caller's environment sets it (``CNNRT_TIERED=0`` measures a native cold
start). The zoo export is made before, outside the timings.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

CHILD_FLAG = "--child"


def _child(model: str, batch: int, threads: int) -> None:
    t0 = time.perf_counter()
    import cnnrt
    from cnnrt.tools.modelsource import random_feeds, resolve_model

    path = resolve_model(model)
    t1 = time.perf_counter()
    sess = cnnrt.InferenceSession(path, threads=threads)
    t2 = time.perf_counter()
    feeds = random_feeds(sess, batch=batch)
    sess.run(None, feeds)
    t3 = time.perf_counter()
    tm = sess.build_timings
    rep = {
        "import_s": t1 - t0,
        "build_s": t2 - t1,
        "first_run_s": t3 - t2,
        "to_first_result_s": t3 - t0,
        "cpu_s": time.process_time(),  # every thread's, the interpreter's start included
        "load_average": os.getloadavg()[0],
        "tiered": "numpy_tier_runs" in tm,
        "torch_imported": "torch" in sys.modules,
    }
    print(json.dumps(rep), flush=True)
    from cnnrt.runtime.tiered import wait_for_compiles

    wait_for_compiles()
    sess.run(None, feeds)  # on the native kernels now: the timings gain the compiling's figures
    tm = sess.build_timings
    print(json.dumps({"compile_s": tm.get("compile", 0.0), "compiled": tm.get("compiled", 0)}), flush=True)


def measure(model: str, batch: int, threads: int, kernel_dir: str, finish: bool = True) -> dict:
    """One fresh process building ``model`` and running it once on kernels cached in ``kernel_dir``;
    ``finish=False`` stops it at its first result (a tiered start's compiling is cut short)."""
    env = dict(os.environ, NUMBA_CACHE_DIR=kernel_dir)
    env.setdefault("CNNRT_TIERED", "1")
    cmd = [sys.executable, "-m", "cnnrt.tools.coldstart", CHILD_FLAG, model, str(batch), str(threads)]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = p.stdout.readline()
    wall_first = time.perf_counter() - t0
    if not finish and first.strip():
        p.kill()
        p.communicate()
        rep = json.loads(first)
        rep.update(wall_to_first_result_s=wall_first, wall_s=None, compile_s=None, compiled=None)
        return rep
    rest = p.stdout.read()  # not communicate(): readline may have buffered more than one line
    err = p.stderr.read()
    p.wait()
    wall = time.perf_counter() - t0
    if p.returncode != 0 or not first.strip():
        from cnnrt.errors import CnnrtError

        last = (err.strip().splitlines() or ["no output"])[-1]
        raise CnnrtError(f"start-up measurement of {model} failed: {last}")
    rep = json.loads(first)
    rep.update(json.loads(rest.strip().splitlines()[-1]))
    rep.update(wall_to_first_result_s=wall_first, wall_s=wall)
    return rep


def bench_cold(
    models: list[str], batches: list[int], threads_list: list[int], json_path: str | None, warm: bool = True
) -> int:
    """``cnnrt bench --cold``: a cold and a warm start per model, batch and thread count
    (``warm=False``: only the cold one, stopped at its first result)."""
    from cnnrt.tools.modelsource import resolve_model

    records = []
    print(
        f"{'model':16s} {'batch':>5s} {'thr':>3s} {'start':5s} {'first result s':>14s} "
        f"{'import':>6s} {'build':>6s} {'1st run':>7s} {'cpu s':>6s} {'compiled':>8s} {'compile s':>9s} "
        f"{'process s':>9s} {'load':>5s}"
    )
    for model in models:
        resolve_model(model)  # a zoo export happens here, not inside a timing
        for batch in batches:
            for threads in threads_list:
                kdir = tempfile.mkdtemp(prefix="cnnrt-coldstart-")
                try:
                    for start in ("cold", "warm") if warm else ("cold",):
                        rep = measure(model, batch, threads, kdir, finish=warm)
                        rep.update(model=model, batch=batch, threads=threads, start=start)
                        records.append(rep)
                        print(
                            f"{model:16s} {batch:5d} {threads:3d} {start:5s} {rep['wall_to_first_result_s']:14.2f} "
                            f"{rep['import_s']:6.2f} {rep['build_s']:6.2f} {rep['first_run_s']:7.2f} "
                            f"{rep['cpu_s']:6.2f} {_num(rep['compiled'], 8, 0)} {_num(rep['compile_s'], 9, 2)} "
                            f"{_num(rep['wall_s'], 9, 2)} {rep['load_average']:5.1f}"
                            + ("  (numpy tier)" if rep["tiered"] else ""),
                            flush=True,
                        )
                finally:
                    shutil.rmtree(kdir, ignore_errors=True)
    if json_path:
        with open(json_path, "w") as f:
            json.dump(records, f, indent=1)
    return 0


def _num(v, width: int, digits: int) -> str:
    return f"{'-':>{width}s}" if v is None else f"{v:{width}.{digits}f}"


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == CHILD_FLAG:
    _child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
elif __name__ == "__main__":  # python -m cnnrt.tools.coldstart [MODEL ...]: every zoo model's cold first result
    from cnnrt.models import names

    bench_cold(sys.argv[1:] or names(), [1], [2], None, warm=False)
