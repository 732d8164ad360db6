"""cnnrt.batch with the local engine: rows against onnxruntime, error rows, inputs of every kind, and an
interrupted run (a process killed mid-way) resumed to the rows of an uninterrupted one."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from batch_data import BATCH, CORRUPT, N_IMAGES, SHARD, assert_same_rows, read_rows
from helpers import ort_run

import cnnrt.batch
from cnnrt.batch.images import preprocess_for, softmax
from cnnrt.cli import main
from cnnrt.errors import CnnrtError

PRE = preprocess_for((3, 32, 32))


def _ort_probs(model: Path, tensors: np.ndarray) -> np.ndarray:
    (logits,) = ort_run(onnx.load_model_from_string(model.read_bytes()), {"x": tensors.astype(np.float32)})
    return softmax(logits)


def _check_against(rows: list[dict], probs: dict[str, np.ndarray], k: int = 3) -> None:
    """Each good row holds the k best classes of the reference probabilities, and their probabilities."""
    for r in rows:
        if r["error"] is None:
            p = probs[r["id"]]
            np.testing.assert_allclose(r["scores"], p[r["classes"]], atol=1e-5, err_msg=r["id"])
            rest = np.delete(p, r["classes"])
            assert len(r["classes"]) == k and min(r["scores"]) >= rest.max() - 1e-5, r["id"]
            assert r["scores"] == sorted(r["scores"], reverse=True)


def test_image_folder_rows_match_onnxruntime(dataset):
    rows = read_rows(dataset["local"])
    ids = sorted(p.relative_to(dataset["images"]).as_posix() for p in dataset["images"].rglob("*.*"))
    assert [r["id"] for r in rows] == ids  # every item once, in listing order
    assert {r["id"] for r in rows if r["error"]} == set(dataset["bad"])
    assert all(r["classes"] is None and "cannot decode image" in r["error"] for r in rows if r["error"])
    good = [r["id"] for r in rows if r["error"] is None]
    tensors = np.stack([PRE((dataset["images"] / i).read_bytes()) for i in good])
    _check_against(rows, dict(zip(good, _ort_probs(dataset["model"], tensors))))
    assert len({r["classes"][0] for r in rows if r["classes"]}) > 2  # the data exercises more than one class
    s = dataset["summary"]
    assert (s.items, s.computed, s.errors, s.shards) == (N_IMAGES, N_IMAGES, len(CORRUPT), N_IMAGES // SHARD + 1)


def test_killed_run_resumes_to_the_same_rows(dataset, tmp_path):
    out = tmp_path / "out"
    # the run kills its own process (SIGKILL: no clean-up) once 100 items are filed, mid-way through a shard
    code = f"""
        import os, signal
        import cnnrt.batch

        def progress(done, total):
            if done >= 100:
                os.kill(os.getpid(), signal.SIGKILL)

        cnnrt.batch.run({str(dataset["model"])!r}, {str(dataset["images"])!r}, {str(out)!r},
                        shard_size={SHARD}, batch_size={BATCH}, topk=3, progress=progress)
    """
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr
    written = sorted(p.name for p in out.glob("part-*.parquet"))
    assert written == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    summary = cnnrt.batch.run(
        dataset["model"].as_posix(), str(dataset["images"]), str(out), shard_size=SHARD, batch_size=BATCH, topk=3
    )
    assert (summary.computed, summary.resumed_shards) == (N_IMAGES - 3 * SHARD, 3)
    assert_same_rows(read_rows(out), read_rows(dataset["local"]))
    again = cnnrt.batch.run(str(dataset["model"]), str(dataset["images"]), str(out), shard_size=SHARD, topk=3)
    assert again.computed == 0


def test_other_settings_are_refused_on_resume(dataset):
    with pytest.raises(CnnrtError, match="topk differ"):
        cnnrt.batch.run(str(dataset["model"]), str(dataset["images"]), str(dataset["local"]), shard_size=SHARD, topk=2)


def _run(dataset, source, out, **kw) -> Path:
    cnnrt.batch.run(str(dataset["model"]), str(source), str(out), batch_size=5, shard_size=7, **{"topk": 3, **kw})
    return out


def _npy_folder(folder: Path, n: int, seed: int) -> np.ndarray:
    """``n`` random items saved as t00.npy, t01.npy, ... (every other one with a batch axis of 1)."""
    tensors = np.random.default_rng(seed).standard_normal((n, 3, 32, 32)).astype(np.float32)
    folder.mkdir()
    for i, t in enumerate(tensors):
        np.save(folder / f"t{i:02d}.npy", t if i % 2 else t[None])
    return tensors


def test_npy_folder_with_bad_files(dataset, tmp_path):
    folder = tmp_path / "npy"
    tensors = _npy_folder(folder, 12, seed=1)
    np.save(folder / "wrong.npy", tensors[0, :, :16])
    (folder / "garbage.npy").write_bytes(b"\x93NUMPY broken")
    rows = read_rows(_run(dataset, folder, tmp_path / "out"))
    errors = {r["id"]: r["error"] for r in rows if r["error"]}
    assert set(errors) == {"wrong.npy", "garbage.npy"}
    assert "[3, 16, 32]" in errors["wrong.npy"] and "not a readable .npy" in errors["garbage.npy"]
    _check_against(rows, {f"t{i:02d}.npy": p for i, p in enumerate(_ort_probs(dataset["model"], tensors))})


def test_parquet_image_bytes_and_tensor_columns(dataset, tmp_path):
    files = sorted(dataset["images"].rglob("*.*"))[:20]
    ids = [f"img-{i}" for i in range(len(files))]
    images = pa.table({"id": ids, "image": [f.read_bytes() for f in files]})
    pq.write_table(images, tmp_path / "images.parquet", row_group_size=6)
    by_bytes = read_rows(_run(dataset, tmp_path / "images.parquet", tmp_path / "o1"))
    from_folder = {r["id"]: r for r in read_rows(dataset["local"])}
    for item_id, f, row in zip(ids, files, by_bytes):
        assert row["id"] == item_id
        want = from_folder[f.relative_to(dataset["images"]).as_posix()]
        assert (row["classes"], row["error"]) == (want["classes"], want["error"])

    rng = np.random.default_rng(2)
    tensors = rng.standard_normal((9, 3 * 32 * 32)).astype(np.float32)
    cells = [t.tolist() for t in tensors] + [[1.0, 2.0], None]
    folder = tmp_path / "tables"
    folder.mkdir()
    pq.write_table(pa.table({"x": cells[:6]}), folder / "a.parquet")
    pq.write_table(pa.table({"x": cells[6:]}), folder / "b.parquet")
    rows = read_rows(_run(dataset, folder, tmp_path / "o2"))
    assert [r["id"] for r in rows] == [f"a.parquet#{i}" for i in range(6)] + [f"b.parquet#{i}" for i in range(5)]
    assert [bool(r["error"]) for r in rows] == [False] * 9 + [True, True]
    probs = _ort_probs(dataset["model"], tensors.reshape(9, 3, 32, 32))
    _check_against(rows, {r["id"]: p for r, p in zip(rows, probs)})


def test_fixed_batch_models_run_in_padded_chunks(dataset, tmp_path):
    from batch_data import tiny_classifier

    model = tmp_path / "fixed.onnx"
    model.write_bytes(tiny_classifier(batch=4))
    tensors = _npy_folder(tmp_path / "npy", 7, seed=5)  # batches of 5: one chunk of 4, one of 1 padded to 4
    cnnrt.batch.run(str(model), str(tmp_path / "npy"), str(tmp_path / "out"), batch_size=5, topk=3)
    rows = read_rows(tmp_path / "out")
    assert len(rows) == 7 and not any(r["error"] for r in rows)
    _check_against(rows, {f"t{i:02d}.npy": p for i, p in enumerate(_ort_probs(dataset["model"], tensors))})


def test_raw_outputs(dataset, tmp_path):
    tensors = _npy_folder(tmp_path / "npy", 6, seed=3)
    rows = read_rows(_run(dataset, tmp_path / "npy", tmp_path / "out", topk=0))
    (want,) = ort_run(onnx.load_model_from_string(dataset["model"].read_bytes()), {"x": tensors})
    np.testing.assert_allclose(np.array([r["output:y"] for r in rows]), want, rtol=1e-4, atol=1e-4)


def test_cli_writes_shards_and_prints_a_summary(dataset, tmp_path, capsys):
    rc = main(["batch", str(dataset["model"]), str(dataset["images"] / "d1"), "-o", str(tmp_path / "o"), "--topk", "2"])
    out, err = capsys.readouterr()
    assert rc == 0 and err == ""  # no progress drawn when stderr is not a terminal
    n = N_IMAGES // 2
    bad = sum(1 for b in dataset["bad"] if b.startswith("d1/"))
    assert out.startswith(f"batch   {n} items in ") and f"{bad} error rows" in out
    assert len(read_rows(tmp_path / "o")) == n
    assert main(["batch", str(dataset["model"]), str(tmp_path / "none"), "-o", str(tmp_path / "o2")]) == 1
    assert capsys.readouterr().err.strip() == f"cnnrt: error: input {str(tmp_path / 'none')!r} does not exist"


def test_progress_reports_rate_and_eta():
    from cnnrt.cli.batch import _Rate
    from cnnrt.tools.progress import Progress

    bar = Progress(0, "batch", enabled=False)
    rate = _Rate(bar)
    rate(10, 100)  # 10 resumed items do not count towards the rate
    rate.first = (rate.first[0] - 2.0, 10)
    rate(30, 100)
    assert bar.done == 30 and bar.total == 100
    rate_s = float(bar.note.split()[0])
    assert 9.0 < rate_s <= 10.0 and bar.note.endswith(f"ETA {70 / rate_s:.0f}s")


def test_imagenet_classifiers_get_label_names(dataset, tmp_path):
    from batch_data import tiny_classifier

    from cnnrt.batch.images import imagenet_classes

    model = tmp_path / "imagenet.onnx"
    model.write_bytes(tiny_classifier(classes=1000))
    images = sorted(dataset["images"].glob("d0/*.jpg"))[:4]
    out = tmp_path / "out"
    cnnrt.batch.run(str(model), str(images[0].parent), str(out), topk=2)
    rows = read_rows(out)
    assert all(r["labels"] == [imagenet_classes()[c] for c in r["classes"]] for r in rows if r["error"] is None)
