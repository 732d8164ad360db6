"""``cnnrt bench --cold``'s measurement: a fresh process reports its start-up split."""

from __future__ import annotations

import os

from cnnrt.tools.coldstart import measure


def test_measure_a_fresh_process_on_a_warm_cache(tiny_path, monkeypatch):
    kernels = os.environ["NUMBA_CACHE_DIR"]  # this session's kernels: the child starts warm
    monkeypatch.setenv("CNNRT_TIERED", "0")
    rep = measure(str(tiny_path), 2, 1, kernels)
    assert not rep["tiered"] and not rep["torch_imported"]
    assert 0 < rep["import_s"] < rep["to_first_result_s"] <= rep["wall_to_first_result_s"] <= rep["wall_s"]
    assert rep["to_first_result_s"] >= rep["build_s"] + rep["first_run_s"]
    assert rep["compiled"] >= 0 and rep["compile_s"] >= 0 and rep["cpu_s"] > 0
    cut = measure(str(tiny_path), 2, 1, kernels, finish=False)  # stopped at its first result
    assert cut["wall_s"] is None and cut["to_first_result_s"] > 0


def test_bench_cold_defaults_to_batch_1(cnnrt_main, monkeypatch):
    import cnnrt.tools.coldstart as coldstart

    seen = {}
    monkeypatch.setattr(
        coldstart, "bench_cold", lambda models, batches, threads, json_path: seen.update(b=batches) or 0
    )
    assert cnnrt_main("bench", "--cold", "lenet5", "--threads", "2").rc == 0
    assert seen["b"] == [1]
