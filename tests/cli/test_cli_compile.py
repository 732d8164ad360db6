"""``cnnrt compile``: builds, runs once, reports what was jitted; a second process finds the cache."""

from __future__ import annotations


def test_compile_twice_second_is_all_cache(cnnrt_cli, tiny_path, tmp_path):
    first = cnnrt_cli("compile", tiny_path, "--json", "c1.json")
    assert first.rc == 0, first.err
    rep = first.json(tmp_path / "c1.json")
    [m] = rep["models"]
    assert m["steps"] >= 1 and m["first_run_s"] > 0 and m["kernels"]
    for key in ("import", "passes", "planning", "kernels"):
        assert key in m["build"]
    assert all(k["function"].startswith("cnnrt.kernels.") for k in m["kernels"])
    second = cnnrt_cli("compile", tiny_path, "--json", "c2.json")
    assert second.rc == 0, second.err
    [m2] = second.json(tmp_path / "c2.json")["models"]
    assert m2["compiled"] == 0, m2["kernels"]  # everything came from Numba's on-disk cache
    assert m2["from_cache"] >= 1
    assert "from cache" in second.out


def test_compile_lenet5_with_batch(cnnrt_cli, lenet5_path, tmp_path):
    r = cnnrt_cli("compile", lenet5_path, "--batch", "2", "--json", "c.json")
    assert r.rc == 0, r.err
    [m] = r.json(tmp_path / "c.json")["models"]
    assert m["batch"] == 2 and m["ops"].get("Conv", 0) + m["ops"].get("BlockedConv", 0) >= 3
