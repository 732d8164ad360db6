"""``cnnrt inspect --format html``: the page is self-contained and works in a real browser.

The browser test drives Debian's chromium through chromedriver (tests/cli/webdriver.py): the page
loads without console errors, search finds a node, a click on a fused node lists the ONNX nodes
it came from and highlights them in the ONNX graph, hovering a memory region names its tensor and
producer. It writes a screenshot; ``CNNRT_UPDATE_SCREENSHOT=1`` also stores it as the README's
picture (cnnrt/tools/inspector/screenshot.png).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers import make_model
from inspect_models import STEM_OUT, small_resnet
from onnx import helper
from webdriver import Browser, browser_missing

import cnnrt
from cnnrt.cli import main
from cnnrt.tools import inspect_html
from cnnrt.tools.inspect import report

SCREENSHOT = Path(__file__).resolve().parents[2] / "cnnrt" / "tools" / "inspector" / "screenshot.png"
FUSED = "block.b/Conv+BatchNormalization+residual+Relu"


@pytest.fixture(scope="module")
def small_path(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("inspect") / "small_resnet.onnx"
    onnx.save(small_resnet(), p)
    return p


def _data(page: str) -> dict:
    blob = re.search(r'<script type="application/json" id="cnnrt-data">(.*?)</script>', page, re.S).group(1)
    return json.loads(blob)


def test_page_is_self_contained_and_names_every_origin(small_path, tmp_path, capsys):
    out = tmp_path / "page.html"  # the suffix alone asks for html
    assert main(["inspect", str(small_path), "-o", str(out)]) == 0
    page = out.read_text()
    # nothing to fetch: no external script, style, image or font (the SVG namespace is only a name)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page)
    assert "@import" not in page and "url(http" not in page and "fetch(" not in page
    assert page.count("<script") == 2 and page.count("</script>") == 2
    data = _data(page)
    originals = {b["name"] for b in data["original"]["boxes"] if b["kind"] == "node"}
    onnx_names = {n.name for n in small_resnet().graph.node}
    assert originals == onnx_names
    for n in data["report"]["nodes"]:  # the click on any node finds its origins in the ONNX graph
        assert set(n["origin"]) <= originals, n["name"]
    fused = next(n for n in data["report"]["nodes"] if n["name"] == FUSED)
    assert fused["origin"] == ["block.b/Conv", "block.b/BatchNormalization", "block/Add", "block/Relu"]
    assert data["profile"] is None


def test_script_cannot_be_closed_by_a_name_and_unnamed_nodes_get_the_importers_names(tmp_path):
    """A node named '</script>...' stays inside the JSON block; unnamed ONNX nodes are named as the
    importer names them (op_type and index), so their origins still match."""
    w = np.ones((2, 1, 1, 1), np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("Relu", ["c"], ["y"], name="</script><script>alert(1)</script>"),
    ]
    model = make_model(nodes, [("x", [1, 1, 4, 4], np.float32)], [("y", [1, 2, 4, 4], np.float32)], {"w": w})
    sess = cnnrt.InferenceSession(model, threads=1, opt_level=0)
    page = inspect_html.render(inspect_html.page_data(sess, report(sess), "x"))
    assert page.count("</script>") == 2
    data = _data(page)
    assert {b["name"] for b in data["original"]["boxes"] if b["kind"] == "node"} == {
        "Conv_0",
        "</script><script>alert(1)</script>",
    }
    assert [n["origin"] for n in data["report"]["nodes"]] == [["Conv_0"], ["</script><script>alert(1)</script>"]]


@pytest.mark.skipif(browser_missing() is not None, reason=browser_missing() or "")
def test_inspector_in_headless_chromium(small_path, tmp_path):
    out = tmp_path / "inspect.html"
    assert main(["inspect", str(small_path), "--format", "html", "-o", str(out), "--profile", "--runs", "3"]) == 0
    with Browser() as b:
        b.open(out.as_uri())
        assert b.script("return document.body.dataset.ready") == "1"
        # search: one node matches, it is marked and its details open
        b.type(b.find("#search"), "block.b")
        assert b.text(b.find("#search-count")) == "1 match"
        assert b.script("return [...document.querySelectorAll('#opt-svg .node.match')].map(e => e.dataset.name)") == [
            FUSED
        ]
        # a click on the fused node: its four ONNX nodes listed and highlighted in the ONNX graph
        b.click(b.find(f'#opt-svg .node[data-name="{FUSED}"]'))
        assert b.text(b.find("#detail-name")) == FUSED
        origins = ["block.b/Conv", "block.b/BatchNormalization", "block/Add", "block/Relu"]
        assert b.text(b.find("#detail-origin")).splitlines() == origins
        lit = b.script("return [...document.querySelectorAll('#orig-svg .node.origin')].map(e => e.dataset.name)")
        assert sorted(lit) == sorted(origins)
        details = b.text(b.find("#details"))
        assert "+bias +residual Relu" in details and "direct: the blocked register tile" in details
        assert "[fuse_epilogue] fired Conv + Add -> Conv(residual)" in details
        # profiled: every step has a measured time and a colour
        assert (
            b.script("return document.querySelectorAll('#opt-svg .node[style], #opt-svg .node rect[style]').length")
            == 8
        )
        # the memory plan: hovering a region names its tensor and producer
        b.hover(b.find(f'#mem-svg .region[data-tensor="{STEM_OUT}"]'))
        tip = b.text(b.find("#tooltip"))
        assert tip.startswith(f"{STEM_OUT}\nmade by stem/Conv+BatchNormalization+Relu (BlockedConv)")
        shot = tmp_path / "inspector.png"
        b.screenshot(shot)
        problems = [e for e in b.console() if e.get("level") in ("SEVERE", "WARNING")]
        assert problems == []
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("CNNRT_UPDATE_SCREENSHOT") == "1":  # 128 colours keep the README's picture small
        from PIL import Image

        Image.open(shot).convert("RGB").quantize(128, method=Image.Quantize.FASTOCTREE).save(SCREENSHOT, optimize=True)
