"""Every subcommand has --help with an example; errors are one line unless --debug."""

from __future__ import annotations

import pytest

COMMANDS = ["run", "bench", "profile", "compare", "compile"]


@pytest.mark.parametrize("cmd", COMMANDS)
def test_help_has_example(cnnrt_cli, cmd):
    r = cnnrt_cli(cmd, "--help")
    assert r.rc == 0, r.err
    assert "example" in r.out
    assert f"cnnrt {cmd} " in r.out.split("example", 1)[1]


def test_listed_in_top_level_help(cnnrt_cli):
    r = cnnrt_cli("--help")
    assert r.rc == 0
    for cmd in COMMANDS:
        assert cmd in r.out


@pytest.mark.parametrize("cmd", ["run", "profile", "compare", "compile", "bench"])
def test_missing_model_is_a_one_line_error(cnnrt_cli, cmd):
    r = cnnrt_cli(cmd, "no_such_model.onnx")
    assert r.rc == 1
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cnnrt: error:"), r.err
    assert "no_such_model.onnx" in lines[0]


def test_debug_shows_traceback(cnnrt_cli):
    r = cnnrt_cli("--debug", "run", "no_such_model.onnx")
    assert r.rc != 0
    assert "Traceback" in r.err
