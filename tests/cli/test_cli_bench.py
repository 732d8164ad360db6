"""``cnnrt bench``: answers are checked before times are shown; JSON records, plots, exit codes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cnnrt.tools.bench import (
    BackendResult,
    bench_case,
    format_rows,
    geomean_summary,
    peer_geomean_summary,
    records_for,
)

REQUIRED = {"model", "backend", "batch", "threads", "min_ms", "median_ms", "p90_ms", "ratio_vs_onnxruntime", "status"}


def test_bench_case_refuses_to_time_a_wrong_answer():
    x = np.linspace(-1, 1, 50, dtype=np.float32).reshape(5, 10)
    calls = {"bad": 0}

    def bad():
        calls["bad"] += 1
        return [x + 0.5]

    def boom():
        raise RuntimeError("kernel exploded")

    runners = {"onnxruntime": lambda: [x], "close": lambda: [x + 1e-6], "bad": bad, "boom": boom}
    res = bench_case(runners, runs=3, warmup=1)
    assert res["close"].status == "ok" and len(res["close"].times) == 3
    assert res["onnxruntime"].status == "ok" and len(res["onnxruntime"].times) == 3
    assert res["bad"].status == "WRONG" and res["bad"].times == [] and calls["bad"] == 1
    assert res["bad"].max_rel_error == pytest.approx(0.5)
    assert res["boom"].status == "error" and "kernel exploded" in res["boom"].note
    recs = {r["backend"]: r for r in records_for("m", 1, 1, res)}
    assert recs["bad"]["median_ms"] is None and recs["bad"]["ratio_vs_onnxruntime"] is None
    assert recs["onnxruntime"]["ratio_vs_onnxruntime"] == pytest.approx(1.0)
    assert recs["close"]["ratio_vs_onnxruntime"] == pytest.approx(
        recs["close"]["median_ms"] / recs["onnxruntime"]["median_ms"]
    )
    rows = format_rows(list(recs.values()))
    bad_row = next(r for r in rows if " bad " in r)
    assert "WRONG" in bad_row and "ms" not in bad_row.split("WRONG")[0].split("bad")[1]


def test_bench_case_shape_or_count_mismatch_is_wrong():
    x = np.zeros((2, 3), np.float32)
    res = bench_case({"onnxruntime": lambda: [x], "t": lambda: [x.T], "n": lambda: [x, x]}, runs=1, warmup=0)
    assert res["t"].status == "WRONG" and res["n"].status == "WRONG"


def test_geomean_summary():
    recs = [
        {"model": m, "backend": "cnnrt", "batch": 1, "threads": 1, "ratio_vs_onnxruntime": r}
        for m, r in (("a", 2.0), ("b", 8.0))
    ] + [{"model": "a", "backend": "onnxruntime", "batch": 1, "threads": 1, "ratio_vs_onnxruntime": 1.0}]
    [s] = geomean_summary(recs)
    assert s["backend"] == "cnnrt" and s["geomean_ratio_vs_onnxruntime"] == pytest.approx(4.0) and s["models"] == 2


def _timed(name, ms):
    return BackendResult(name, "ok", 0.0, [ms / 1e3] * 3, wall_s=3 * ms / 1e3)


def test_ratio_to_the_fastest_float32_peer_of_the_row():
    res = {
        "onnxruntime": _timed("onnxruntime", 4.0),
        "openvino": _timed("openvino", 2.0),
        "openvino-bf16": _timed("openvino-bf16", 0.5),  # reduced precision: no peer
        "cnnrt": _timed("cnnrt", 3.0),
        "cnnrt-cuda": _timed("cnnrt-cuda", 1.0),  # cnnrt's own: no peer
        "torch": BackendResult("torch", "WRONG", 1.0),
    }
    recs = {r["backend"]: r for r in records_for("m", 1, 2, res)}
    assert recs["cnnrt"]["ratio_vs_fastest_peer"] == pytest.approx(1.5) and recs["cnnrt"]["fastest_peer"] == "openvino"
    assert recs["openvino"]["ratio_vs_fastest_peer"] == pytest.approx(0.5)  # vs onnxruntime, not itself
    assert recs["onnxruntime"]["fastest_peer"] == "openvino" and recs["torch"]["ratio_vs_fastest_peer"] is None
    row = next(r for r in format_rows(list(recs.values())) if r.split()[4] == "cnnrt")
    assert row.split()[-1] == "1.50x" and row.split()[-3] == "0.75x"  # vs peer last, vs ort where it was
    more = records_for("n", 8, 2, {k: _timed(k, ms) for k, ms in (("onnxruntime", 2.0), ("cnnrt", 6.0))})
    summary = {(s["backend"], s["batch"]): s for s in peer_geomean_summary(list(recs.values()) + more)}
    assert summary[("cnnrt", 1)]["geomean_ratio_vs_fastest_peer"] == pytest.approx(1.5)
    assert summary[("cnnrt", None)]["geomean_ratio_vs_fastest_peer"] == pytest.approx(math.sqrt(1.5 * 3.0))
    assert summary[("cnnrt", None)]["rows"] == 2


def test_bench_lenet5_all_backends(cnnrt_cli, tmp_path):
    r = cnnrt_cli(
        "bench",
        "lenet5",
        *"--backends cnnrt,onnxruntime,onnxruntime-nchw,torch --runs 3 --threads 1".split(),
        *"--json b.json --plot b.png".split(),
    )
    assert r.rc == 0, r.out + r.err
    recs = r.json(tmp_path / "b.json")
    assert {x["backend"] for x in recs} == {"cnnrt", "onnxruntime", "onnxruntime-nchw", "torch"}
    for rec in recs:
        assert REQUIRED <= set(rec)
        assert rec["status"] == "ok" and rec["model"] == "lenet5" and rec["batch"] == 1 and rec["threads"] == 1
        assert 0 < rec["min_ms"] <= rec["median_ms"] <= rec["p90_ms"]
        assert math.isclose(
            rec["ratio_vs_onnxruntime"],
            rec["median_ms"] / next(x["median_ms"] for x in recs if x["backend"] == "onnxruntime"),
        )
    assert "geometric mean" in r.out and "vs peer" in r.out.splitlines()[0]
    cn = next(x for x in recs if x["backend"] == "cnnrt")
    fastest = min((x for x in recs if x["backend"] != "cnnrt"), key=lambda x: x["median_ms"])
    assert cn["fastest_peer"] == fastest["backend"]
    assert cn["ratio_vs_fastest_peer"] == pytest.approx(cn["median_ms"] / fastest["median_ms"])
    assert (tmp_path / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_sweep_file_model_svg(cnnrt_cli, tiny_path, tmp_path):
    r = cnnrt_cli(
        "bench",
        tiny_path,
        *"--backends cnnrt,onnxruntime --batch 1,2 --threads 1,2 --runs 2".split(),
        *"--json b.json --plot b.svg".split(),
    )
    assert r.rc == 0, r.out + r.err
    recs = r.json(tmp_path / "b.json")
    assert sorted((x["batch"], x["threads"], x["backend"]) for x in recs) == sorted(
        (b, t, be) for b in (1, 2) for t in (1, 2) for be in ("cnnrt", "onnxruntime")
    )
    assert b"<svg" in (tmp_path / "b.svg").read_bytes()[:500]


def test_bench_torch_skipped_for_file_models_without_failing(cnnrt_cli, tiny_path, tmp_path):
    r = cnnrt_cli("bench", tiny_path, "--runs", "2", "--json", "b.json")  # default backends include torch
    assert r.rc == 0, r.out + r.err
    torch_rec = next(x for x in r.json(tmp_path / "b.json") if x["backend"] == "torch")
    assert torch_rec["status"] == "skipped" and "zoo" in torch_rec["note"] and torch_rec["median_ms"] is None


def test_bench_explicit_unavailable_backend_is_skipped_with_reason(cnnrt_cli, tiny_path, tmp_path):
    from cnnrt.tools.bench import _cuda_reason

    why = _cuda_reason()
    if why is None:
        pytest.skip("a CUDA device is available here")
    r = cnnrt_cli("bench", tiny_path, "--backends", "onnxruntime,cnnrt-cuda", "--runs", "2", "--json", "b.json")
    assert r.rc == 1  # asked for and not run
    rec = next(x for x in r.json(tmp_path / "b.json") if x["backend"] == "cnnrt-cuda")
    assert rec["status"] == "skipped" and rec["note"]
    row = next(line for line in r.out.splitlines() if "cnnrt-cuda" in line)
    assert "skip" in row


def test_bench_unknown_backend(cnnrt_cli, tiny_path):
    r = cnnrt_cli("bench", tiny_path, "--backends", "cnnrt,tensorflow")
    assert r.rc == 1 and "tensorflow" in r.err


def test_onnxruntime_nchw_turns_the_layout_transformer_off(tiny_path):
    """onnxruntime-nchw is onnxruntime at ORT_ENABLE_EXTENDED: no NCHWc conversion."""
    import onnxruntime as ort

    from cnnrt.tools.timing import ort_session

    assert ort_session(tiny_path, 1, optimize="extended").get_session_options().graph_optimization_level == (
        ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    )
    assert ort_session(tiny_path, 1).get_session_options().graph_optimization_level == (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    )
