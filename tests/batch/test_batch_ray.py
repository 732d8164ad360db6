"""cnnrt.batch with the Ray engine on a local 2-CPU Ray cluster started here: the same rows and error rows as
the local engine."""

from __future__ import annotations

import pytest
from batch_data import BATCH, CORRUPT, N_IMAGES, SHARD, assert_same_rows, read_rows

import cnnrt.batch
from cnnrt.batch.ray_engine import plan_cluster

ray = pytest.importorskip("ray", reason="the [ray] extra (part of [dev]) is not installed")


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    yield
    ray.shutdown()


def test_ray_engine_gives_the_local_rows(dataset, cluster, tmp_path):
    """The whole dataset through Ray: every row, error rows included, equals the local engine's. (Resuming
    is the shard writer's, shared by both engines: tests/batch/test_batch_local.py kills and resumes a run.)"""
    out = tmp_path / "ray"
    plans = []
    summary = cnnrt.batch.run(
        str(dataset["model"]),
        str(dataset["images"]),
        str(out),
        engine="ray",
        shard_size=SHARD,
        batch_size=BATCH,
        topk=3,
        on_plan=plans.append,
    )
    assert (plans[0].actors, plans[0].threads_per_actor, plans[0].cpus) == (1, 2, 2)
    assert (summary.computed, summary.errors, summary.resumed_shards) == (N_IMAGES, len(CORRUPT), 0)
    assert_same_rows(read_rows(out), read_rows(dataset["local"]))


def test_cluster_plan_splits_each_node_between_loading_and_actors():
    def shape(p):
        return p.actors, p.threads_per_actor, p.cpus_per_actor

    assert shape(plan_cluster([2])) == (1, 2, 1.5)  # a loading task's half CPU beside one actor
    assert shape(plan_cluster([8])) == (2, 3, 3.0)  # 2 CPUs for loading, 6 for two actors
    assert shape(plan_cluster([16, 16])) == (6, 4, 4.0)  # 4 CPUs a node for loading, 12 for three actors
    assert shape(plan_cluster([8], actors=3, threads=2)) == (3, 2, 2.0)
