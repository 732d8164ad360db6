"""Property: for any mutation of a valid model, cnnrt either loads and runs it and agrees with
onnxruntime (when onnxruntime accepts it too), or raises a CnnrtError. Never another
exception, never a hang.

Mutations (tests/fuzz/fuzz_mutators.py): attributes (strides, pads, group, kernel_shape, axis,
perm, auto_pad...), initializer and graph input/output shapes, dtypes, rewired edges,
deleted initializers/nodes/inputs/outputs, op types, opsets, domains, node order, then
maybe a truncation or byte flips of the serialized model. The whole file runs in about a
minute or two; CNNRT_FUZZ_EXAMPLES scales the example counts for a longer local run.
"""

from __future__ import annotations

import warnings
from collections import Counter

import pytest
from fuzz_lib import BASE_MODELS, base_model, check, fuzz_one, fuzz_settings
from fuzz_mutators import HypothesisChooser, mutate_bytes
from hypothesis import given
from hypothesis import strategies as st

OUTCOMES: Counter = Counter()


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@pytest.mark.timeout(300)
@pytest.mark.parametrize("base", sorted(BASE_MODELS))
def test_mutated_models_load_and_agree_or_raise_cnnrt_error(base):
    @fuzz_settings(1200)
    @given(st.data())
    def prop(data):
        outcome, _detail, log = fuzz_one(HypothesisChooser(data), base_names=[base])
        OUTCOMES[outcome] += 1
        # the safety nets in frontends/graph_builder.py and session.py still give a typed error, but a
        # hit means a converter or kernel builder crashed instead of validating: a bug
        assert not outcome.endswith("safety-net"), (log, _detail)

    prop()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("base", ["conv_net", "lenet5"])
def test_truncated_and_bit_flipped_models(base):
    data = base_model(base).SerializeToString()

    @fuzz_settings(1000)
    @given(st.data())
    def prop(hd):
        blob, _ = mutate_bytes(HypothesisChooser(hd), data)
        outcome, _detail = check(blob)
        OUTCOMES[outcome] += 1

    prop()


@pytest.mark.timeout(60)
@given(st.binary(max_size=2048))
@fuzz_settings(1500)
def test_arbitrary_bytes(blob):
    outcome, _ = check(blob, compare_ort=False)
    assert outcome.startswith("load-error") or outcome in ("ok", "huge-input") or outcome.startswith("run-error")


def test_outcome_summary():
    """Not a check: prints how the mutated models fared (run with -s to see it)."""
    print("\nfuzz outcomes:", dict(OUTCOMES.most_common()))
