"""``cnnrt compile``: builds, runs once, reports what was jitted; a second process finds the cache."""

from __future__ import annotations


def test_compile_twice_second_is_all_cache(cnnrt_cli, tiny_path, tmp_path):
    first = cnnrt_cli("compile", tiny_path, "--json", "c1.json")
    assert first.rc == 0, first.err
    rep = first.json(tmp_path / "c1.json")
    assert [m["batch"] for m in rep["models"]] == [1, 8]  # the default batch sizes
    assert rep["total_s"] > 0 and rep["cache_dir"] in first.out and "total" in first.out
    m = rep["models"][0]
    assert m["steps"] >= 1 and m["first_run_s"] > 0 and m["kernels"]
    for key in ("import", "passes", "planning", "kernels"):
        assert key in m["build"]
    assert all(k["function"].startswith("cnnrt.kernels.") for k in m["kernels"])
    second = cnnrt_cli("compile", tiny_path, "--json", "c2.json")
    assert second.rc == 0, second.err
    m2 = second.json(tmp_path / "c2.json")["models"][0]
    assert m2["compiled"] == 0, m2["kernels"]  # everything came from Numba's on-disk cache
    assert m2["from_cache"] >= 1
    assert "from cache" in second.out


def test_compile_lenet5_with_batch(cnnrt_cli, lenet5_path, tmp_path):
    r = cnnrt_cli("compile", lenet5_path, "--batch", "2", "--json", "c.json")
    assert r.rc == 0, r.err
    [m] = r.json(tmp_path / "c.json")["models"]
    assert m["batch"] == 2 and m["ops"].get("Conv", 0) + m["ops"].get("BlockedConv", 0) >= 3


def test_compile_in_worker_processes_leaves_nothing_to_compile(cnnrt_cli, lenet5_path, tmp_path):
    r = cnnrt_cli("compile", lenet5_path, "--batch", "3", "--jobs", "2", "--json", "c.json")
    assert r.rc == 0, r.err
    [m] = r.json(tmp_path / "c.json")["models"]
    assert m["batch"] == 3 and m["workers_s"] > 0
    assert m["compiled"] == 0, m["kernels"]  # the workers compiled (or the cache held) every kernel


def test_shares_keep_an_op_and_algorithm_in_one_worker():
    from types import SimpleNamespace as NS

    from cnnrt.tools.compile_workers import shares

    def step(op, alg=None):
        return NS(node=NS(op=op, attrs={"algorithm": alg} if alg else {}))

    steps = [step("BlockedConv", "winograd"), step("BlockedConv", "direct"), step("BlockedMaxPool")]
    steps += [step("BlockedConv", "winograd"), step("Gemm"), step("BlockedConv", "direct")]
    a, b = shares(steps, 2)
    assert sorted(a + b) == list(range(6))
    assert {0, 3} <= set(a) or {0, 3} <= set(b)  # both Winograd steps in one worker
    assert {1, 5} <= set(a) or {1, 5} <= set(b)
    assert shares(steps, 1) == [[0, 3, 1, 5, 2, 4]]
