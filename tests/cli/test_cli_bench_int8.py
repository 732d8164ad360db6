"""``cnnrt bench --precision int8``: the int8 table's wiring (rows, ratios, geometric means,
exit code) with bench_int8.bench_row stubbed out; the row itself is timed by tools/bench_int8."""

from __future__ import annotations

import pytest

from cnnrt.tools import bench_int8


def _row(model, batch, threads, runs, openvino, ms_int8, steps, as_written=0.0, saturates=False):
    row = {"model": model, "batch": batch, "threads": threads, "cnnrt-f32_ms": 8.0, "cnnrt-int8_ms": ms_int8}
    row.update({"onnxruntime-int8_ms": 4.0, "int8_speedup_over_f32": 8.0 / ms_int8, "cnnrt-int8_steps": steps})
    row.update({"cnnrt-int8_steps_as_written": as_written, "onnxruntime-int8_saturates": saturates})
    row["cnnrt-int8_vs_onnxruntime"] = ms_int8 / 4.0
    if openvino:
        row.update({"openvino-int8_ms": 2.0, "cnnrt-int8_vs_openvino": ms_int8 / 2.0})
    return row


@pytest.fixture
def stub_rows(monkeypatch):
    seen = []

    def fake(model, batch, threads=2, runs=10, openvino=True):
        seen.append((model, batch, threads, runs, openvino))
        return _row(model, batch, threads, runs, openvino, 2.0 if batch == 1 else 8.0, 0.0)

    monkeypatch.setattr(bench_int8, "bench_row", fake)
    return seen


def test_int8_table_rows_and_geomeans(cnnrt_main, stub_rows):
    r = cnnrt_main("bench", "resnet18", "densenet121", "--precision", "int8", "--batch", "1,8", "--threads", "2")
    assert r.rc == 0, r.err
    assert [s[:3] for s in stub_rows] == [
        ("resnet18", 1, 2),
        ("resnet18", 8, 2),
        ("densenet121", 1, 2),
        ("densenet121", 8, 2),
    ]
    assert [s[4] for s in stub_rows] == [True, True, False, False]  # OpenVINO crashes on densenet121's QDQ file
    lines = r.out.splitlines()
    assert lines[0].split()[-8:] == ["vs", "ort", "vs", "ov", "vs", "f32", "steps", "as-wr"]
    assert lines[1].split()[-5:] == ["0.50x", "1.00x", "4.00x", "0.00", "0.00"]
    assert lines[4].split()[-5:-2] == ["2.00x", "-x", "1.00x"]
    # geomeans: vs ort over (0.5, 2, 0.5, 2) = 1; vs ov over the two OpenVINO rows (1, 4) = 2
    assert "cnnrt-int8_vs_onnxruntime 1.00x" in lines[-1] and "cnnrt-int8_vs_openvino 2.00x" in lines[-1]


@pytest.mark.parametrize(
    "steps, as_written, saturates, rc",
    [
        (3.0, 0.0, False, 1),  # onnxruntime int8 is exact: the distance from it counts
        (0.0, 3.0, False, 0),
        (3.0, 0.0, True, 0),  # its u8 x s8 sums saturate: the distance from the file as written counts
        (0.0, 3.0, True, 1),
    ],
)
def test_int8_exit_code_when_steps_from_the_reference_exceed_the_bound(
    cnnrt_main, monkeypatch, steps, as_written, saturates, rc
):
    def fake(m, b, t=2, runs=10, openvino=True):
        return _row(m, b, t, runs, False, 2.0, steps, as_written, saturates)

    monkeypatch.setattr(bench_int8, "bench_row", fake)
    assert cnnrt_main("bench", "resnet18", "--precision", "int8").rc == rc


def test_int8_needs_zoo_models(cnnrt_main, no_work, tmp_path):
    r = cnnrt_main("bench", str(tmp_path / "m.onnx"), "--precision", "int8")
    assert r.rc != 0 and "zoo" in r.err
