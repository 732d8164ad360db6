"""Compiling a model's kernels in several worker processes at once (``cnnrt compile --jobs N``).

Numba compiles one function at a time per process (a global compiler lock), and a large
model's first run compiles its kernels one after the other. Which kernels a step needs
depends only on its argument types, not on the data, so a step can be run for its compile on
any data: each worker builds the same session, zeroes the arena and runs only its share of
the steps, and Numba's on-disk cache collects what they compile. The shares group steps by op
and algorithm, so that one kernel function is compiled by one worker: two processes saving
different signatures of one function into its cache index at once could lose one of them
(the caller's own run afterwards compiles whatever is missing).
"""

from __future__ import annotations

import subprocess
import sys

FLAG = "--compile-share"
# rough relative compile cost of a step group's kernels (the Winograd and blocked-conv task
# kernels inline register tiles and dominate); everything else counts 1
_WEIGHT = {("BlockedConv", "winograd"): 4, ("BlockedConv", "direct"): 3, ("Conv", "winograd"): 4}


def _group(step) -> tuple[str, str]:
    return step.node.op, str(step.node.attrs.get("algorithm") or "")


def shares(steps, n: int) -> list[list[int]]:
    """Step indices per worker: whole (op, algorithm) groups, heaviest first onto the least loaded."""
    groups: dict[tuple[str, str], list[int]] = {}
    for i, s in enumerate(steps):
        groups.setdefault(_group(s), []).append(i)
    load = [0.0] * n
    out: list[list[int]] = [[] for _ in range(n)]
    for key, idx in sorted(groups.items(), key=lambda kv: (-_WEIGHT.get(kv[0], 1), kv[0])):
        w = load.index(min(load))
        out[w].extend(idx)
        load[w] += _WEIGHT.get(key, 1)
    return out


def _worker(path: str, batch: int, threads: int, k: int, n: int) -> None:
    import numpy as np

    import cnnrt

    sess = cnnrt.InferenceSession(path, threads=threads, tiered=False)
    sess.prepare(batch=batch)
    from cnnrt.runtime.threads import apply_threads

    apply_threads(threads)
    ex = sess.executor
    ex.arena[:] = 0  # zeros: no step meets NaN or garbage it might choke on
    steps = ex.steps
    with np.errstate(all="ignore"):
        for i in shares(steps, n)[k]:
            steps[i].run(steps[i].ins, steps[i].outs)


def compile_in_workers(path: str, batch: int, threads: int, jobs: int) -> None:
    """Run ``jobs`` worker processes that together compile ``path``'s kernels at this batch size."""
    cmd = [sys.executable, "-m", "cnnrt.tools.compile_workers", FLAG, path, str(batch), str(threads), str(jobs)]
    procs = [subprocess.Popen([*cmd, str(k)], stderr=subprocess.PIPE, text=True) for k in range(jobs)]
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            from cnnrt.errors import CnnrtError

            last = (err.strip().splitlines() or ["no output"])[-1]
            raise CnnrtError(f"a compile worker for {path} failed: {last}")


if __name__ == "__main__" and len(sys.argv) == 7 and sys.argv[1] == FLAG:
    _worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[6]), int(sys.argv[5]))
