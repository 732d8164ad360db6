"""The oracle shared by the hypothesis tests and the atheris harness, and one fuzzing step
(:func:`fuzz_one`: a base model, mutated by tests/fuzz/fuzz_mutators.py, then checked).

The oracle (:func:`check`) loads and runs the result with cnnrt and sorts the outcome:
``load-error:<Class>`` / ``run-error:<Class>`` for a CnnrtError, ``match`` when onnxruntime
also accepts and the outputs agree, ``ort-rejects`` when only cnnrt accepts,
``nonfinite-divergence`` when both overflowed and only their NaN/Inf masks differ. Any other
exception escaping cnnrt, or a disagreement on finite values, raises ``OracleFailure``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import numpy as np
import onnx

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "robustness"))

from fuzz_mutators import Chooser, mutate, mutate_bytes  # noqa: E402
from robust_models import BASE_MODELS, ort_session  # noqa: E402

import cnnrt  # noqa: E402
from cnnrt.errors import CnnrtError  # noqa: E402

# Small enough that a mutated model cannot make cnnrt (or onnxruntime after it) eat the
# machine, big enough for every base model.
FUZZ_MEMORY_LIMIT = 16 << 20

# Error messages of the safety nets: the error is typed, but its root cause sits deeper
# (a converter, kernel builder or planner that should have validated first).
SAFETY_NET_MARKERS = ("cannot be imported: ", "executor failed: ", "memory planning failed", "kernel build failed: ")


def fuzz_settings(n: int):
    """hypothesis settings for ``n`` examples (times $CNNRT_FUZZ_EXAMPLES), reproducible unless
    $CNNRT_FUZZ_RANDOM is set."""
    from hypothesis import HealthCheck, settings

    return settings(
        max_examples=max(1, int(n * float(os.environ.get("CNNRT_FUZZ_EXAMPLES", "1")))),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        derandomize=os.environ.get("CNNRT_FUZZ_RANDOM") is None,  # reproducible in CI
        database=None,
    )


class OracleFailure(AssertionError):
    """cnnrt crashed with a non-CnnrtError, or disagreed with onnxruntime."""


# ---------------------------------------------------------------------------- oracle


def _np_dtype(ort_type: str) -> np.dtype:
    """'tensor(float)' -> float32, 'tensor(double)' -> float64, 'tensor(int16)' -> int16..."""
    name = ort_type.removeprefix("tensor(").removesuffix(")")
    return np.dtype({"float": "float32", "double": "float64"}.get(name, name))


def feeds_for(sess, seed: int = 0) -> dict[str, np.ndarray]:
    """Random feeds matching a session's declared inputs (symbolic/unknown dims -> 1)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for arg in sess.get_inputs():
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in arg.shape]
        feeds[arg.name] = rng.standard_normal(shape).astype(_np_dtype(arg.type))
    return feeds


def compare(
    got: Sequence[np.ndarray], ref: Sequence[np.ndarray], rel: float = 1e-3, nonfinite_masks: bool = True
) -> str | None:
    """None if cnnrt's outputs agree with onnxruntime's, else why not. Finite values must agree
    where both are finite; the NaN/+Inf/-Inf masks must be equal unless ``nonfinite_masks=False``."""
    if len(got) != len(ref):
        return f"{len(got)} outputs, onnxruntime gives {len(ref)}"
    for k, (a, b) in enumerate(zip(got, ref)):
        b = np.asarray(b)
        if a.shape != b.shape or a.dtype != b.dtype:
            return f"output {k}: {a.dtype}{list(a.shape)}, onnxruntime gives {b.dtype}{list(b.shape)}"
        if a.dtype.kind not in "fc":
            if not np.array_equal(a, b):
                return f"output {k}: values differ"
            continue
        for mask in (np.isnan, np.isposinf, np.isneginf) if nonfinite_masks else ():
            if not np.array_equal(mask(a), mask(b)):
                return f"output {k}: {mask.__name__} masks differ"
        fin = np.isfinite(b) & np.isfinite(a)
        if fin.any():
            ref_f = b[fin].astype(np.float64)
            scale = max(1.0, float(np.max(np.abs(ref_f))))
            err = float(np.max(np.abs(a[fin].astype(np.float64) - ref_f)))
            if not err <= rel * scale:
                return f"output {k}: max abs error {err:.3e} > {rel} * {scale:.3e}"
    return None


def check(model: onnx.ModelProto | bytes, seed: int = 0, compare_ort: bool = True) -> tuple[str, str]:
    """Load and run ``model`` with cnnrt; returns (outcome, detail). Raises OracleFailure."""
    try:
        try:
            sess = cnnrt.InferenceSession(model, threads=1, memory_limit=FUZZ_MEMORY_LIMIT)
        except CnnrtError as e:
            return _typed("load-error", e)
        if any(
            np.prod([d if isinstance(d, int) and d > 0 else 1 for d in a.shape], dtype=float) > 1 << 22
            for a in sess.get_inputs()
        ):
            return "huge-input", "a declared input has more than 4M elements: not fed"
        feeds = feeds_for(sess, seed)
        try:
            got = sess.run(None, feeds)
        except CnnrtError as e:
            return _typed("run-error", e)
        # the session must still work after whatever happened
        again = sess.run(None, feeds)
        for a, b in zip(got, again):
            if not np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"):
                raise OracleFailure("two runs on the same feeds differ")
    except OracleFailure:
        raise
    except RecursionError as e:
        raise OracleFailure(f"RecursionError escaped cnnrt: {e}") from e
    except Exception as e:
        raise OracleFailure(f"{type(e).__name__} escaped cnnrt (not a CnnrtError): {e}") from e
    if not compare_ort:
        return "ok", ""
    data = model if isinstance(model, bytes) else model.SerializeToString()
    try:
        ref = ort_session(data).run(None, feeds)
    except Exception as e:
        return "ort-rejects", f"{type(e).__name__}: {str(e)[:300]}"
    why = compare(got, ref)
    if why is None:
        return "match", ""
    if "masks differ" in why and compare(got, ref, nonfinite_masks=False) is None:
        # Both overflowed somewhere and disagree only on which outputs went NaN/Inf. Some of
        # that is onnxruntime's own (MLAS MaxPool's NaN order, LRN's running sum, 0 * Inf in
        # linear Resize), so the fuzzer only records it; tests/robustness/test_special_values.py
        # pins the per-op semantics, bugs included.
        return "nonfinite-divergence", why
    raise OracleFailure(f"cnnrt and onnxruntime disagree: {why}")


def _typed(stage: str, e: CnnrtError) -> tuple[str, str]:
    msg = str(e)
    if not msg.strip():
        raise OracleFailure(f"{type(e).__name__} with an empty message")
    if any(marker in msg for marker in SAFETY_NET_MARKERS):
        return f"{stage}:safety-net", f"{type(e).__name__}: {msg[:400]}"
    return f"{stage}:{type(e).__name__}", msg[:400]


def base_model(name: str) -> onnx.ModelProto:
    return BASE_MODELS[name]()


def fuzz_one(
    c: Chooser, base_names: Sequence[str] = tuple(BASE_MODELS), compare_ort: bool = True
) -> tuple[str, str, list[str]]:
    """Pick a base model, mutate it (proto, then maybe bytes), check it: (outcome, detail, log)."""
    name = c.choice(list(base_names))
    m = base_model(name)
    log = [name] + mutate(c, m)
    try:
        data = m.SerializeToString()
    except Exception as e:  # the mutated proto itself may not serialize (e.g. bad UTF-8)
        return "unserializable", str(e), log
    data, what = mutate_bytes(c, data)
    if what:
        log.append(what)
    outcome, detail = check(data, seed=c.int(0, 100), compare_ort=compare_ort)
    return outcome, detail, log
