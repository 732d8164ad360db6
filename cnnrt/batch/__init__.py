"""Batch inference over a whole dataset: ``cnnrt.batch.run(model, input, output)``.

The input is a folder of images (JPEG/PNG) or ``.npy`` tensors, or a Parquet file/folder with an image-bytes
or tensor column; the output a folder of Parquet shards with each item's id, its top-k classes and scores
(or the raw outputs) and an error column. Two engines compute the same rows: ``"local"`` (this process) and
``"ray"`` (a Ray cluster; the ``[ray]`` extra). See :mod:`cnnrt.batch.shards` for how a rerun resumes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cnnrt.batch.job import Job
from cnnrt.batch.shards import ShardWriter
from cnnrt.batch.sources import list_items
from cnnrt.errors import CnnrtError

ENGINES = ("local", "ray")


@dataclass(frozen=True)
class Summary:
    items: int  # in the input
    computed: int  # this run (the rest were in shards already written)
    errors: int  # error rows among the computed ones
    seconds: float
    shards: int
    resumed_shards: int
    output: str

    @property
    def items_per_s(self) -> float:
        return self.computed / self.seconds if self.seconds > 0 else 0.0


def run(
    model: str | bytes,
    source: str,
    output: str,
    *,
    engine: str = "local",
    batch_size: int = 32,
    shard_size: int = 1024,
    topk: int = 5,
    use_softmax: bool = True,
    resize: int | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    column: str | None = None,
    id_column: str | None = None,
    threads: int | None = None,
    workers: int | None = None,
    address: str | None = None,
    actors: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    on_plan: Callable | None = None,
) -> Summary:
    """Run ``model`` (an .onnx path or its bytes) over every item of ``source``; write shards to ``output``.

    ``progress(done, total)`` is called as rows are filed (``done`` counts resumed items too). Local engine:
    ``threads`` for the session, ``workers`` decode threads. Ray engine: ``address`` of a cluster to join
    (default: start a local one unless Ray is initialised already), ``actors`` and ``threads`` per actor
    (default: from the cluster's CPUs; ``on_plan`` receives the plan).
    """
    if engine not in ENGINES:
        raise CnnrtError(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if batch_size < 1:
        raise CnnrtError(f"--batch-size must be >= 1, got {batch_size}")
    if isinstance(model, str | Path):
        from cnnrt.frontends.loader import model_bytes

        model = model_bytes(model)  # external data read in: the job ships the model as bytes
    job = Job.create(model, topk=topk, use_softmax=use_softmax, resize=resize, mean=mean, std=std)
    refs = list_items(source, column, id_column)
    writer = ShardWriter(output, [r.id for r in refs], shard_size, job.fingerprint(), labels=job.labels())
    pending = writer.pending()
    todo = [refs[i] for k in pending for i in writer.item_range(k)]
    done, errors = len(refs) - len(todo), 0
    if progress:
        progress(done, len(refs))
    start = time.perf_counter()
    if not todo:
        batches = iter(())
    elif engine == "local":
        from cnnrt.batch.local import default_workers, run_local
        from cnnrt.runtime.threads import default_threads

        batches = run_local(job, todo, batch_size, threads, workers or default_workers(threads or default_threads()))
    else:
        from cnnrt.batch.ray_engine import run_ray

        batches = run_ray(job, todo, batch_size, address=address, actors=actors, threads=threads, on_plan=on_plan)
    for batch in batches:
        writer.add(batch)
        done += len(batch["index"])
        errors += int((batch["error"] != "").sum())
        if progress:
            progress(done, len(refs))
    writer.close()
    return Summary(
        items=len(refs),
        computed=len(todo),
        errors=errors,
        seconds=time.perf_counter() - start,
        shards=writer.shards,
        resumed_shards=writer.shards - len(pending),
        output=str(output),
    )
