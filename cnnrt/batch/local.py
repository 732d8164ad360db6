"""The embedded engine: one process, one cnnrt session, items decoded by a thread pool while it runs.

Decoding (Pillow) and the normalising numpy work release the GIL, so a few threads keep batches ready while
the session's own threads (Numba's pool) run the model: the two overlap instead of alternating. Batches are
loaded in order with a bounded look-ahead, so memory stays a few batches whatever the input's size.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from cnnrt.batch.job import Job, infer_batch, load_batch, refs_to_columns
from cnnrt.batch.sources import Ref


def default_workers(cores: int) -> int:
    """Decode threads beside a session using every core: half the cores, at least one."""
    return max(1, cores // 2)


def run_local(
    job: Job,
    refs: list[Ref],
    batch_size: int,
    threads: int | None,
    workers: int,
) -> Iterator[dict]:
    """Result batches (see :func:`cnnrt.batch.job.infer_batch`) for ``refs``, in order."""
    from concurrent.futures import ThreadPoolExecutor

    chunks = (refs[i : i + batch_size] for i in range(0, len(refs), batch_size))

    def load(chunk: list[Ref]) -> dict:
        return load_batch(refs_to_columns(chunk), job)

    with job.session(threads) as sess, ThreadPoolExecutor(workers, thread_name_prefix="cnnrt-decode") as pool:
        ahead: deque = deque(pool.submit(load, c) for _, c in zip(range(workers + 1), chunks))
        while ahead:
            loaded = ahead.popleft().result()
            nxt = next(chunks, None)
            if nxt is not None:
                ahead.append(pool.submit(load, nxt))
            yield infer_batch(loaded, job, sess)
