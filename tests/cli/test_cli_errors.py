"""Bad command lines stop before any work with one line that names the option and what it expects.

Most run ``cnnrt.cli.main`` in this process (``cnnrt_main``), with ``no_work`` failing the test if
the command gets as far as loading a model: the point is that the check comes first.
"""

from __future__ import annotations

import argparse
import os
import stat
import subprocess
import sys

import numpy as np
import pytest

from cnnrt.errors import ModelLoadError


def one_line_error(r, rc: int, *fragments: str) -> str:
    assert r.rc == rc, (r.rc, r.out, r.err)
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cnnrt: error:"), r.err
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    assert "Traceback" not in r.err
    return lines[0]


@pytest.mark.parametrize(
    "argv, fragments",
    [
        (["run", "M", "--batch", "-3"], ["--batch", "positive integer", "'-3'"]),
        (["run", "M", "--batch", "0"], ["--batch", "positive integer", "'0'"]),
        (["run", "M", "--threads", "0"], ["--threads", "positive integer"]),
        (["bench", "M", "--runs", "0"], ["--runs", "positive integer"]),
        (["bench", "M", "--warmup", "-1"], ["--warmup", "integer >= 0"]),
        (["bench", "M", "--batch", "1,0"], ["--batch", "positive integers"]),
        (["bench", "M", "--max-seconds", "-2"], ["--max-seconds", "positive number"]),
        (["bench", "M", "--concurrency", "0"], ["--concurrency", "positive integer"]),
        (["bench", "M", "--plot", "b.txt"], ["--plot", ".png, .svg, .pdf"]),
        (["profile", "M", "--runs", "0"], ["--runs", "positive integer"]),
        (["profile", "M", "--plot", "p.jpg"], ["--plot", ".png"]),
        (["demo", "M", "--runs", "0"], ["--runs", "positive integer"]),
        (["compare", "M", "--rtol", "-0.001"], ["--rtol", ">= 0"]),
        (["run", "M", "--rtol", "nan"], ["--rtol", "positive number"]),
        (["run", "M", "--shape", "x:2xax8"], ["--shape", "NAME:DIMS"]),
        (["run", "M", "-o", "/proc/nope/out.npz"], ["-o", "'/proc/nope' does not exist"]),
        (["run", "M", "-o", "out.txt"], ["-o", "use a .npz file name"]),
        (["bench", "M", "--csv", "no/such/dir/b.csv"], ["--csv", "does not exist"]),
        (["zoo", "export", "lenet5", "--batch", "0"], ["--batch", "positive integer"]),
    ],
)
def test_bad_values_are_rejected_before_any_work(cnnrt_main, no_work, tiny_path, argv, fragments):
    argv = [str(tiny_path) if a == "M" else a for a in argv]
    line = one_line_error(cnnrt_main(*argv), 2, *fragments)
    assert f"`cnnrt {argv[0]}" in line  # where the options are listed


def test_output_directory_is_not_created(cnnrt_main, no_work, tmp_path):
    one_line_error(cnnrt_main("zoo", "export", "lenet5", "-o", "new/dir/l.onnx"), 2, "'new/dir' does not exist")
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("opset", ["99", "5"])
def test_zoo_export_refuses_opsets_cnnrt_or_torch_cannot_handle(cnnrt_main, tmp_path, opset):
    pytest.importorskip("torch")
    from cnnrt.frontends.schema_checks import MAX_OPSET, MIN_OPSET

    line = one_line_error(cnnrt_main("zoo", "export", "lenet5", "--opset", opset, "-o", "l.onnx"), 1, f"opset {opset}")
    lo, hi = (int(x) for x in line.split("opsets ")[1].split(" (")[0].split(" to "))
    assert MIN_OPSET <= lo <= hi <= MAX_OPSET
    assert not (tmp_path / "l.onnx").exists()


def test_zoo_export_writes_a_readable_file(cnnrt_main, tmp_path):
    pytest.importorskip("torch")
    old = os.umask(0o022)
    try:
        r = cnnrt_main("zoo", "export", "lenet5", "-o", "l.onnx")
    finally:
        os.umask(old)
    assert r.rc == 0, r.err
    assert stat.S_IMODE((tmp_path / "l.onnx").stat().st_mode) == 0o644


def test_zoo_export_unknown_name_suggests(cnnrt_main):
    one_line_error(cnnrt_main("zoo", "export", "lenet"), 1, "unknown zoo model 'lenet'", "did you mean", "lenet5")


def test_bench_resolves_every_model_before_timing(cnnrt_main, no_work):
    r = cnnrt_main("bench", "lenet5", "squeezenet", "--runs", "2")
    one_line_error(r, 1, "'squeezenet'", "did you mean", "squeezenet1_1")
    assert r.out == ""  # not even the table's header: lenet5 was not timed


def test_missing_model_file_says_not_found_with_did_you_mean(cnnrt_main, no_work):
    one_line_error(cnnrt_main("demo", "nosuch.onnx"), 1, "model file 'nosuch.onnx' not found", "zoo models:", "lenet5")
    one_line_error(cnnrt_main("run", "resnet18.onnx"), 1, "not found", "did you mean the zoo model resnet18?")


@pytest.mark.parametrize(
    "header, kind", [(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "PNG"), (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "JPEG")]
)
def test_image_given_as_input_points_to_image_option(cnnrt_main, no_work, tiny_path, tmp_path, header, kind):
    (tmp_path / "cat.img").write_bytes(header + bytes(64))
    for spec in ("cat.img", "x=cat.img"):
        one_line_error(cnnrt_main("run", tiny_path, "--input", spec), 2, f"is a {kind} image", "--image")


def test_missing_input_file(cnnrt_main, no_work, tiny_path):
    one_line_error(cnnrt_main("run", tiny_path, "--input", "x=nope.npy"), 2, "no file 'nope.npy'")


def test_shape_is_checked_against_the_model_before_running(cnnrt_main, tiny_path, monkeypatch):
    import cnnrt

    monkeypatch.setattr(cnnrt, "InferenceSession", lambda *a, **k: pytest.fail("built a session"))
    one_line_error(cnnrt_main("run", tiny_path, "--shape", "y:1x3x8x8"), 1, "no input 'y'", "['x']")
    one_line_error(cnnrt_main("run", tiny_path, "--shape", "x:1x3x8"), 1, "rank 4")
    one_line_error(cnnrt_main("run", tiny_path, "--shape", "x:1x4x8x8"), 1, "fixes dims", "axis 1")
    one_line_error(cnnrt_main("run", tiny_path, "--shape", "x:2x3x8x8", "--batch", "3"), 1, "--batch is 3")
    one_line_error(cnnrt_main("bench", tiny_path, "--shape", "x:2x3x8x8", "--batch", "1,2"), 1, "one --batch")


def test_debug_is_accepted_anywhere(cnnrt_main):
    for argv in (
        ["--debug", "run", "nosuch.onnx"],
        ["run", "nosuch.onnx", "--debug"],
        ["run", "--debug", "nosuch.onnx"],
    ):
        with pytest.raises(ModelLoadError, match="nosuch.onnx"):
            cnnrt_main(*argv)


def test_version(cnnrt_main):
    import cnnrt

    r = cnnrt_main("--version")
    assert r.rc == 0 and r.out.strip() == f"cnnrt {cnnrt.__version__}"


def _options(parser: argparse.ArgumentParser, prog: str):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, f"{prog} {name}")
        elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            yield prog, action


@pytest.mark.parametrize("command", ["demo", "run", "zoo", "bench", "inspect", "compare", "profile", "compile"])
def test_every_option_has_help(command):
    from cnnrt.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    missing = [f"{prog} {a.option_strings or a.dest}" for prog, a in _options(sub, command) if not a.help]
    assert not missing
    assert all(a.help for a in parser._actions if not isinstance(a, argparse._SubParsersAction))


def test_cuda_simulator_is_named_as_such():
    """Under NUMBA_ENABLE_CUDASIM=1 the cuda backend is labelled the simulator (run prints the label
    on its model line, bench as a note); the CPU backend never is."""
    code = "from cnnrt.cli.options import simulator_note as s; print(s('cuda'), s('cnnrt-cuda'), s('cpu'), sep='|')"
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    cuda, cnnrt_cuda, cpu = p.stdout.rstrip("\n").split("|")
    assert "CUDA simulator" in cuda and "CUDA simulator" in cnnrt_cuda and cpu == ""


def test_run_label_uses_the_simulator_note(cnnrt_main, tiny_path, monkeypatch):
    from cnnrt.cli import options

    monkeypatch.setattr(options, "simulator_note", lambda backend: " (SIM)" if backend == "cpu" else "")
    r = cnnrt_main("run", tiny_path)
    assert r.rc == 0, r.err
    assert "backend cpu (SIM)" in r.out


def test_check_with_a_model_onnxruntime_cannot_run_is_one_line(cnnrt_main, tiny_path, monkeypatch):
    import cnnrt.tools.timing as timing

    def broken(*a, **k):
        raise RuntimeError("[ONNXRuntimeError] : 9 : NOT_IMPLEMENTED : no kernel\nsecond line")

    monkeypatch.setattr(timing, "ort_session", broken)
    one_line_error(cnnrt_main("run", tiny_path, "--check"), 1, "onnxruntime cannot run", "NOT_IMPLEMENTED")


def test_run_shape_sets_the_random_input(cnnrt_main, tiny_path, tmp_path):
    r = cnnrt_main("run", tiny_path, "--shape", "x:2x3x8x8", "--json", "r.json", "-o", "y.npz")
    assert r.rc == 0, r.err
    assert r.json(tmp_path / "r.json")["inputs"]["x"]["shape"] == [2, 3, 8, 8]
    with np.load(tmp_path / "y.npz") as z:
        assert z["y"].shape == (2, 4, 8, 8)
