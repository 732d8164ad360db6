"""``cnnrt run``: inputs from files or random, outputs saved, --check against onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
from helpers import assert_close_to, ort_run


def test_run_lenet5_check_json_output(cnnrt_cli, lenet5_path, tmp_path):
    r = cnnrt_cli("run", lenet5_path, "--check", "--json", "run.json", "--output", "out.npz")
    assert r.rc == 0, r.err
    rep = r.json(tmp_path / "run.json")
    assert rep["check"]["ok"] is True and rep["check"]["against"] == "onnxruntime"
    assert set(rep["inputs"]) == {"input"} and rep["inputs"]["input"]["source"] == "random"
    assert rep["inputs"]["input"]["shape"] == [1, 1, 32, 32]
    assert rep["outputs"]["output"]["shape"] == [1, 10]
    for key in ("import", "passes", "planning", "kernels"):
        assert key in rep["build"]
    with np.load(tmp_path / "out.npz") as z:
        assert z["output"].shape == (1, 10)


def test_run_with_input_files_matches_onnxruntime(cnnrt_cli, tiny_path, tmp_path):
    x = np.random.default_rng(5).standard_normal((2, 3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "feeds.npz", x=x.astype(np.float64))  # float64 is cast, with a note
    ref = ort_run(onnx.load(tiny_path), {"x": x})[0]
    for spec in (["--input", "x=x.npy"], ["--input", "feeds.npz"], ["--input", "x=feeds.npz"]):
        r = cnnrt_cli("run", tiny_path, *spec, "--output", "y.npz", "--check")
        assert r.rc == 0, (spec, r.err)
        with np.load(tmp_path / "y.npz") as z:
            assert_close_to(z["y"], ref)
    assert "cast to float32" in r.out


def test_run_random_inputs_follow_batch(cnnrt_cli, tiny_path, tmp_path):
    r = cnnrt_cli("run", tiny_path, "--batch", "3", "--json", "r.json")
    assert r.rc == 0, r.err
    assert r.json(tmp_path / "r.json")["outputs"]["y"]["shape"] == [3, 4, 8, 8]


def test_run_bad_input_name_is_one_line_error(cnnrt_cli, tiny_path, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 8, 8), np.float32))
    r = cnnrt_cli("run", tiny_path, "--input", "nope=x.npy")
    assert r.rc == 1
    assert r.err.strip().count("\n") == 0 and "nope" in r.err and "'x'" in r.err


def test_run_wrong_shape_says_what_was_expected(cnnrt_cli, tiny_path, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 9, 8), np.float32))
    r = cnnrt_cli("run", tiny_path, "--input", "x=x.npy")
    assert r.rc == 1
    assert "cnnrt: error:" in r.err and "[1, 3, 9, 8]" in r.err
