"""The converter registry: which converter serves which opset, and the op types it lists."""

from __future__ import annotations

import onnx

from cnnrt.frontends.registry import converter_for, onnx_op_types
from cnnrt.frontends.schema_checks import MAX_OPSET, MIN_OPSET


def test_converter_for_takes_the_newest_since_not_above_the_opset():
    split_v2, split_v13 = converter_for("Split", 2), converter_for("Split", 13)
    assert split_v2 is not None and split_v13 is not None and split_v2 is not split_v13
    assert converter_for("Split", 12) is split_v2
    assert converter_for("Split", MAX_OPSET) is split_v13


def test_converter_for_is_none_before_the_first_since_and_for_unknown_ops():
    assert converter_for("HardSwish", 13) is None
    assert converter_for("HardSwish", 14) is not None
    assert converter_for("NoSuchOp", MAX_OPSET) is None


def test_onnx_op_types_are_sorted_default_domain_ops_with_a_converter():
    types = onnx_op_types()
    assert types == sorted(set(types))
    assert {"Conv", "Gemm", "Resize", "Upsample", "Sum"} <= set(types)
    for op in types:
        assert onnx.defs.has(op, ""), op
        assert any(converter_for(op, v) is not None for v in (MIN_OPSET, 7, 9, 10, 11, 13, 14, MAX_OPSET)), op
