"""The Ray engine: Ray Data lists, loads and preprocesses the items in tasks, and ``map_batches`` runs them
through an actor pool, each actor holding one cnnrt session.

The model bytes go into the object store once (``ray.put``) and every actor fetches them from there when it
starts. The cluster's CPUs are split per node (:func:`plan_cluster`): a quarter for the loading tasks
(decoding costs about as much as a small model's inference), the rest for actors of up to 4 threads each
(cnnrt's kernels scale well to a few threads; more actors beat one wide one on many cores).
Result batches come back to the driver in any order; the shard writer files them by item index.
Ray is imported only here: it is the ``[ray]`` extra.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from cnnrt.batch.job import Job, infer_batch, load_batch
from cnnrt.batch.sources import Ref
from cnnrt.errors import CnnrtError

MAX_THREADS_PER_ACTOR = 4
# A loading task waits on reads (shared or object storage) as well as decoding, so two share a CPU. The
# requirement differing from the actors' also keeps Ray Data from fusing loading into the actors, where it
# would run serially with inference instead of beside it.
LOAD_CPUS = 0.5


@dataclass(frozen=True)
class ClusterPlan:
    actors: int
    threads_per_actor: int
    cpus_per_actor: float  # the actors' CPU request: a fraction left over by the loading tasks counts too
    nodes: int
    cpus: int


def plan_cluster(node_cpus: list[int], actors: int | None = None, threads: int | None = None) -> ClusterPlan:
    """Actors and threads per actor for nodes with ``node_cpus`` CPUs each (given values win).

    Per node a quarter of the CPUs (at least one loading task's share) stays with the loading tasks; the rest
    goes to actors of at most MAX_THREADS_PER_ACTOR threads, each thread on a CPU of its own except for the
    rounding up of a fractional share (2 CPUs: one actor of 2 threads beside a loading task, as the local
    engine runs its session beside a decode thread)."""
    if not node_cpus:
        raise CnnrtError("the Ray cluster has no node with CPUs")
    infer = [c - max(LOAD_CPUS, c / 4) for c in node_cpus]
    per_actor = min(i / math.ceil(i / MAX_THREADS_PER_ACTOR) for i in infer) if threads is None else float(threads)
    t = threads or math.ceil(per_actor)
    n = actors or sum(max(1, int(i / per_actor + 1e-9)) for i in infer)
    return ClusterPlan(
        actors=n, threads_per_actor=t, cpus_per_actor=per_actor, nodes=len(node_cpus), cpus=sum(node_cpus)
    )


class _Predictor:
    """One cnnrt session per actor, built from the model bytes in the object store."""

    def __init__(self, model_ref: list, job: Job, threads: int) -> None:
        import ray

        self.job = job
        self.sess = job.session(threads, model_bytes=ray.get(model_ref[0]))

    def __call__(self, batch: dict) -> dict:
        return infer_batch(batch, self.job, self.sess)


def _connect(address: str | None):
    try:
        import ray
        import ray.data
    except ImportError:
        raise CnnrtError("--engine ray needs Ray: pip install -e '.[ray]'") from None
    started = False
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise CnnrtError(f"cannot start or join the Ray cluster {address or '(local)'}: {e}") from None
        started = True
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    return ray, started


def node_cpus(ray) -> list[int]:
    return [int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive") and n["Resources"].get("CPU")]


def run_ray(
    job: Job,
    refs: list[Ref],
    batch_size: int,
    address: str | None = None,
    actors: int | None = None,
    threads: int | None = None,
    on_plan=None,
) -> Iterator[dict]:
    """Result batches for ``refs``, in the order Ray finishes them."""
    ray, started = _connect(address)
    try:
        plan = plan_cluster(node_cpus(ray), actors, threads)
        if on_plan:
            on_plan(plan)
        model_ref = ray.put(job.model_bytes)
        spec = job.without_model()
        blocks = max(1, min(len(refs) // batch_size, 4 * plan.cpus))
        ds = ray.data.from_items([asdict(r) for r in refs], override_num_blocks=blocks)
        ds = ds.map_batches(
            load_batch, fn_kwargs={"job": spec}, batch_size=batch_size, batch_format="numpy", num_cpus=LOAD_CPUS
        )
        ds = ds.map_batches(
            _Predictor,
            fn_constructor_args=([model_ref], spec, plan.threads_per_actor),
            compute=ray.data.ActorPoolStrategy(size=plan.actors),
            num_cpus=plan.cpus_per_actor,
            batch_size=batch_size,
            batch_format="numpy",
        )
        yield from ds.iter_batches(batch_size=None, batch_format="numpy")
    finally:
        if started:
            ray.shutdown()
