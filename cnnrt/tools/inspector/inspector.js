// cnnrt inspector: draws the graphs laid out by cnnrt.tools.graph_layout, the node details and the
// memory plan from the JSON block in this page. No network, no libraries.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const D = JSON.parse(document.getElementById("cnnrt-data").textContent);
const R = D.report;
const TITLE = D.title || R.model;
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
  "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2",
  "#c7c7c7", "#dbdb8d", "#9edae5"];

function svgEl(tag, attrs, parent) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

function esc(s) {
  return String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
}

function mib(bytes) {
  return bytes >= 1048576 ? (bytes / 1048576).toFixed(2) + " MiB" : (bytes / 1024).toFixed(1) + " KiB";
}

function shape(s) {
  return s.length ? s.join("x") : "scalar";
}

// A path through the route's points, each segment a cubic leaving and entering vertically
// (the layout leaves the inter-layer gaps free for these curves).
function routePath(pts) {
  let d = `M${pts[0][0]},${pts[0][1]}`;
  for (let i = 1; i < pts.length; i++) {
    const [x0, y0] = pts[i - 1];
    const [x1, y1] = pts[i];
    const ym = (y0 + y1) / 2;
    d += ` C${x0},${ym} ${x1},${ym} ${x1},${y1}`;
  }
  return d;
}

// Pan (drag) and zoom (wheel) of one <svg> holding one <g>; a drag is not a click.
class PanZoom {
  constructor(svg, g, width, height) {
    Object.assign(this, { svg, g, width, height, s: 1, tx: 0, ty: 0, dragged: false });
    svg.addEventListener("wheel", (e) => {
      e.preventDefault();
      const r = svg.getBoundingClientRect();
      this.zoomAt(e.clientX - r.left, e.clientY - r.top, Math.exp(-e.deltaY * 0.0015));
    }, { passive: false });
    svg.addEventListener("pointerdown", (e) => {
      if (e.button !== 0) return;
      const start = { x: e.clientX, y: e.clientY, tx: this.tx, ty: this.ty };
      this.dragged = false;
      const move = (m) => {
        const dx = m.clientX - start.x;
        const dy = m.clientY - start.y;
        if (!this.dragged && Math.hypot(dx, dy) < 4) return;
        this.dragged = true;
        svg.classList.add("dragging");
        this.tx = start.tx + dx;
        this.ty = start.ty + dy;
        this.apply();
      };
      const up = () => {
        svg.classList.remove("dragging");
        window.removeEventListener("pointermove", move);
        window.removeEventListener("pointerup", up);
      };
      window.addEventListener("pointermove", move);
      window.addEventListener("pointerup", up);
    });
  }
  apply() {
    this.g.setAttribute("transform", `translate(${this.tx},${this.ty}) scale(${this.s})`);
  }
  zoomAt(px, py, k) {
    const s = Math.min(4, Math.max(0.03, this.s * k));
    this.tx = px - (px - this.tx) * (s / this.s);
    this.ty = py - (py - this.ty) * (s / this.s);
    this.s = s;
    this.apply();
  }
  fit() {
    const r = this.svg.getBoundingClientRect();
    this.s = Math.min(1, (r.width - 20) / Math.max(this.width, 1));
    this.tx = (r.width - this.width * this.s) / 2;
    this.ty = 10;
    this.apply();
  }
  // Centre the view on a box region (graph coordinates), zooming in to a readable scale if needed.
  centerOn(x0, y0, x1, y1) {
    const r = this.svg.getBoundingClientRect();
    const fitting = Math.min((r.width - 40) / Math.max(x1 - x0, 1), (r.height - 40) / Math.max(y1 - y0, 1));
    this.s = Math.max(Math.min(this.s, fitting), Math.min(0.8, fitting));
    this.tx = r.width / 2 - ((x0 + x1) / 2) * this.s;
    this.ty = r.height / 2 - ((y0 + y1) / 2) * this.s;
    this.apply();
  }
}

// One drawn graph: boxes (with data-id and data-name) and edges, shapes labelled below each producer.
class GraphView {
  constructor(svg, graph, onClick) {
    this.graph = graph;
    this.boxes = new Map(graph.boxes.map((b) => [b.id, b]));
    this.elems = new Map();
    const defs = svgEl("defs", {}, svg);
    const marker = svgEl("marker", { id: svg.id + "-arrow", viewBox: "0 0 10 10", refX: 10, refY: 5,
      markerWidth: 7, markerHeight: 7, markerUnits: "userSpaceOnUse", orient: "auto-start-reverse" }, defs);
    svgEl("path", { d: "M0,0 L10,5 L0,10 z", fill: "#666" }, marker);
    const g = svgEl("g", {}, svg);
    this.pz = new PanZoom(svg, g, graph.width, graph.height);
    const edges = svgEl("g", {}, g);
    this.edgeElems = graph.edges.map((e) => {
      const p = svgEl("path", { class: "edge", d: routePath(e.route), "marker-end": `url(#${svg.id}-arrow)` }, edges);
      svgEl("title", {}, p).textContent = `${e.tensor} ${e.label}`;
      return p;
    });
    const labels = svgEl("g", {}, g);
    const seen = new Map();
    for (const e of graph.edges) {
      const key = e.src + "\u0000" + e.tensor;
      if (!e.label || e.src.startsWith("in:") || seen.has(key)) continue;
      const k = [...seen.keys()].filter((s) => s.startsWith(e.src + "\u0000")).length;
      seen.set(key, true);
      const t = svgEl("text", { class: "elabel", x: e.route[0][0], y: e.route[0][1] + 11 * (k + 1) }, labels);
      t.textContent = e.label;
    }
    const nodes = svgEl("g", {}, g);
    for (const b of graph.boxes) {
      const cls = `node kind-${b.kind}` + (b.fused ? " fused" : "");
      const ng = svgEl("g", { class: cls, "data-id": b.id, "data-name": b.name }, nodes);
      const rx = b.kind === "node" ? 3 : 12;
      svgEl("rect", { x: b.x - b.w / 2, y: b.y - b.h / 2, width: b.w, height: b.h, rx }, ng);
      b.lines.forEach((line, k) => {
        const t = svgEl("text", { x: b.x, y: b.y - b.h / 2 + 6 + (k + 0.5) * 14, class: k === 0 ? "op" : "" }, ng);
        t.textContent = line;
      });
      ng.addEventListener("click", () => {
        if (!this.pz.dragged) onClick(b);
      });
      this.elems.set(b.id, ng);
    }
  }
  mark(ids, cls) {
    for (const el of this.elems.values()) el.classList.remove(cls);
    for (const id of ids) this.elems.get(id)?.classList.add(cls);
  }
  show(ids) {
    const bs = ids.map((id) => this.boxes.get(id)).filter(Boolean);
    if (!bs.length) return;
    this.pz.centerOn(Math.min(...bs.map((b) => b.x - b.w / 2)), Math.min(...bs.map((b) => b.y - b.h / 2)),
      Math.max(...bs.map((b) => b.x + b.w / 2)), Math.max(...bs.map((b) => b.y + b.h / 2)));
  }
  lightEdges(id) {
    this.graph.edges.forEach((e, k) => this.edgeElems[k].classList.toggle("lit", e.src === id || e.dst === id));
  }
}

const nodeById = new Map(R.nodes.map((n) => [`n:${n.step}`, n]));
const origByName = new Map(D.original.boxes.filter((b) => b.kind === "node").map((b) => [b.name, b.id]));
const optByOrigin = new Map();
for (const [id, n] of nodeById) for (const o of n.origin) optByOrigin.set(o, [...(optByOrigin.get(o) || []), id]);
const producerOp = new Map(R.nodes.flatMap((n) => n.outputs.map((o) => [o.name, n])));

const opt = new GraphView(document.getElementById("opt-svg"), D.graph, (b) => select(b.id));
const orig = new GraphView(document.getElementById("orig-svg"), D.original, (b) => selectOriginal(b));

function row(k, v) {
  return v === "" || v === null || v === undefined ? "" : `<tr><td>${esc(k)}</td><td>${v}</td></tr>`;
}

function valueList(vs) {
  return vs.map((v) => `${esc(v.name)} <b>${esc(shape(v.shape))}</b>` +
    (v.layout && v.layout !== "nchw" ? ` ${esc(v.layout)} (of ${esc(v.logical)})` : "") +
    (v.constant ? " <i>const</i>" : "")).join("<br>");
}

function passList(entries) {
  if (!entries.length) return "<p class='hint'>No pass-log entry names this node.</p>";
  return "<ul>" + entries.map((p) => `<li class="${p.kind}">[${esc(p.pass)}] ${p.kind} <b>${esc(p.rule)}</b>` +
    (p.reason ? `: ${esc(p.reason)}` : "") + ` <span class="hint">(at ${esc(p.at)})</span></li>`).join("") + "</ul>";
}

function details(html) {
  document.getElementById("details").innerHTML = html;
  for (const a of document.querySelectorAll("#details a[data-orig]")) {
    a.addEventListener("click", () => orig.show([a.dataset.orig]));
  }
}

function select(id) {
  const b = opt.boxes.get(id);
  opt.mark([id], "selected");
  opt.lightEdges(id);
  const n = nodeById.get(id);
  if (!n) {
    orig.mark([], "origin");
    const v = [...R.inputs, ...R.outputs].find((x) => x.name === b.name);
    details(`<h3>${esc(b.kind)} ${esc(v ? v.name : "")}</h3><table>${v ? row("shape", esc(shape(v.shape))) +
      row("dtype", esc(v.dtype)) + row("layout", esc(v.layout)) : ""}</table>`);
    highlightRegions(v ? [v.name] : []);
    return;
  }
  const origins = n.origin.map((o) => origByName.get(o)).filter(Boolean);
  orig.mark(origins, "origin");
  orig.show(origins);
  const ms = D.profile ? D.profile.ms[n.name] : undefined;
  const attrs = Object.entries(n.attrs).map(([k, v]) => `${esc(k)}=${esc(JSON.stringify(v))}`).join(", ");
  details(`<h3 id="detail-name">${esc(n.name)}</h3><table>` +
    row("step", n.step) + row("op", `<b>${esc(n.op)}</b>`) + row("epilogue", esc(n.epilogue) || "none") +
    row("algorithm", n.algorithm ? `<b>${esc(n.algorithm)}</b>: ${esc(n.algorithm_reason || "")}` : "") +
    row("precision", n.precision && n.precision !== "f32" ? `<b>${esc(n.precision)}</b>` : "float32") +
    row("layout", esc([...new Set(n.outputs.map((o) => o.layout))].join(", "))) +
    row("inputs", valueList(n.inputs)) + row("outputs", valueList(n.outputs)) +
    row("MACs", n.macs ? `${(n.macs / 1e6).toFixed(2)} M` : "0") +
    row("time", ms === undefined ? "" : `${ms.toFixed(3)} ms (${(100 * ms / D.profile.total_ms).toFixed(1)}%)`) +
    row("attributes", attrs) + "</table>" +
    `<h4>ONNX nodes it came from (${n.origin.length})</h4><ul id="detail-origin">` +
    n.origin.map((o) => `<li><a data-orig="${esc(origByName.get(o) || "")}">${esc(o)}</a></li>`).join("") + "</ul>" +
    `<h4>pass log</h4>${passList(n.passes)}`);
  highlightRegions(n.outputs.map((o) => o.name));
}

function selectOriginal(b) {
  const ids = optByOrigin.get(b.name) || [];
  orig.mark([b.id], "origin");
  opt.mark(ids, "selected");
  opt.show(ids);
  details(`<h3>${esc(b.name)}</h3><table>${row("ONNX op", esc(b.lines[0]))}` +
    row("runs in", ids.map((id) => esc(nodeById.get(id).name)).join("<br>") || "no step (folded away)") + "</table>");
}

// -- search: name or op, case-insensitive; Enter steps through the matches --
const search = document.getElementById("search");
let matches = [];
let matchAt = -1;
search.addEventListener("input", () => {
  const q = search.value.trim().toLowerCase();
  const hit = (b) => b.name.toLowerCase().includes(q) || b.lines[0].toLowerCase().includes(q);
  matches = q ? D.graph.boxes.filter(hit).map((b) => b.id) : [];
  opt.mark(matches, "match");
  orig.mark(q ? D.original.boxes.filter(hit).map((b) => b.id) : [], "match");
  document.getElementById("search-count").textContent = q ? `${matches.length} match${matches.length === 1 ? "" :
    "es"}` : "";
  matchAt = -1;
  if (matches.length) step(1);
});
search.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && matches.length) step(e.shiftKey ? -1 : 1);
});
function step(by) {
  matchAt = (matchAt + by + matches.length) % matches.length;
  opt.show([matches[matchAt]]);
  select(matches[matchAt]);
}

// -- profile: node fill by measured time --
if (D.profile) {
  const max = Math.max(...Object.values(D.profile.ms), 1e-9);
  for (const [id, n] of nodeById) {
    const t = (D.profile.ms[n.name] || 0) / max;
    const rect = opt.elems.get(id).querySelector("rect");
    rect.style.fill = `hsl(${50 - 50 * t}, 95%, ${92 - 27 * t}%)`;
    svgEl("title", {}, opt.elems.get(id)).textContent = `${n.name}: ${(D.profile.ms[n.name] || 0).toFixed(3)} ms`;
  }
  document.getElementById("profile-legend").innerHTML = `time per node, median of ${D.profile.runs} runs: ` +
    `<span style="background:hsl(50,95%,92%)">&nbsp;0&nbsp;</span> to ` +
    `<span style="background:hsl(0,95%,65%)">&nbsp;${max.toFixed(3)} ms&nbsp;</span> ` +
    `(total ${D.profile.total_ms.toFixed(3)} ms)`;
}

// -- memory plan: regions over steps (x) and arena offset (y); live bytes against the arena --
const M = R.memory;
const regions = M.buffers.filter((b) => !b.alias);
const views = new Map();
for (const b of M.buffers) views.set(b.root, [...(views.get(b.root) || []), b.tensor]);
const ops = [...new Set(regions.map((b) => b.producer_op))];
const colour = new Map(ops.map((op, k) => [op, PALETTE[k % PALETTE.length]]));
const tooltip = document.getElementById("tooltip");
document.getElementById("memory-summary").textContent = `arena ${mib(M.arena_bytes)}, peak of live bytes ` +
  `${mib(M.peak_live_bytes)}, unplanned ${mib(M.naive_bytes)}, weights ${mib(M.constant_bytes)}; ` +
  "colour: producer op; hover a region for its tensor";

function drawMemory() {
  const svg = document.getElementById("mem-svg");
  svg.replaceChildren();
  const r = svg.getBoundingClientRect();
  const left = 60;
  const right = 190;
  const top = 8;
  const bottom = 22;
  const W = Math.max(r.width - left - right, 50);
  const band = Math.max(r.height - top - bottom, 60);
  const H = band * 0.72; // the regions; below them, the live bytes per step
  const LH = band - H - 10;
  const steps = M.live_bytes.length;
  const ymax = Math.max(M.arena_bytes, 1) * 1.05;
  const X = (s) => left + ((s + 1.5) / (steps + 2)) * W;
  const Y = (bytes) => top + H - (bytes / ymax) * H;
  const LY = (bytes) => top + H + 10 + LH - (bytes / ymax) * LH;
  for (const b of regions) {
    const rect = svgEl("rect", { class: "region", x: X(b.first_step - 0.5), y: Y(b.offset + b.region_bytes),
      width: Math.max(X(b.last_step + 0.5) - X(b.first_step - 0.5), 1), height: Math.max(Y(b.offset) -
      Y(b.offset + b.region_bytes), 0.5), fill: colour.get(b.producer_op), "data-tensor": b.root }, svg);
    rect.addEventListener("mousemove", (e) => {
      tooltip.hidden = false;
      tooltip.style.left = e.clientX + 14 + "px";
      tooltip.style.top = Math.max(e.clientY - 90, 4) + "px";
      const others = views.get(b.root).filter((t) => t !== b.root);
      tooltip.textContent = `${b.root}\nmade by ${b.producer || "the graph input"} (${b.producer_op})\n` +
        `${b.region_bytes} bytes at offset ${b.offset}, steps ${b.first_step} to ${b.last_step}` +
        (others.length ? `\nalso holds: ${others.join(", ")}` : "");
    });
    rect.addEventListener("mouseleave", () => (tooltip.hidden = true));
    rect.addEventListener("click", () => {
      const n = producerOp.get(b.root);
      if (n) {
        opt.show([`n:${n.step}`]);
        select(`n:${n.step}`);
      }
    });
  }
  const pts = M.live_bytes.map((v, s) => `${X(s - 0.5)},${LY(v)} ${X(s + 0.5)},${LY(v)}`).join(" ");
  svgEl("polyline", { class: "live", points: pts }, svg);
  svgEl("line", { class: "arena-line", x1: left, x2: left + W, y1: LY(M.arena_bytes), y2: LY(M.arena_bytes) }, svg);
  const peakStep = M.live_bytes.indexOf(Math.max(...M.live_bytes));
  svgEl("circle", { cx: X(peakStep), cy: LY(M.peak_live_bytes), r: 3.5, fill: "#c00" }, svg);
  svgEl("text", { class: "axis", x: left - 6, y: LY(0) - 2, "text-anchor": "end" }, svg).textContent = "live";
  const legend = [["#000", "live bytes per step"], ["#c00", `arena ${mib(M.arena_bytes)} (dashed)`],
    ["#c00", `peak live ${mib(M.peak_live_bytes)} at step ${peakStep}`]];
  legend.forEach(([c, text], k) => {
    const t = svgEl("text", { class: "axis", x: left + W + 10, y: top + 12 + 14 * k, fill: c }, svg);
    t.textContent = text;
  });
  ops.forEach((op, k) => {
    const y = top + 60 + 14 * k;
    if (y > top + H) return;
    svgEl("rect", { x: left + W + 10, y: y - 8, width: 10, height: 10, fill: colour.get(op) }, svg);
    svgEl("text", { class: "axis", x: left + W + 24, y }, svg).textContent = op;
  });
  const [unit, per] = M.arena_bytes >= 1048576 ? ["MiB", 1048576] : ["KiB", 1024];
  for (let k = 0; k <= 4; k++) {
    const v = (ymax / 1.05) * (k / 4);
    svgEl("text", { class: "axis", x: left - 6, y: Y(v) + 3, "text-anchor": "end" }, svg).textContent =
      (v / per).toFixed(1);
  }
  const every = Math.max(1, Math.ceil(steps / 20));
  for (let s = 0; s < steps; s += every) {
    svgEl("text", { class: "axis", x: X(s), y: top + H + 10 + LH + 14, "text-anchor": "middle" }, svg).textContent = s;
  }
  svgEl("text", { class: "axis", x: 4, y: top + 10 }, svg).textContent = unit;
  svgEl("text", { class: "axis", x: left + W, y: top + H + 10 + LH + 14, "text-anchor": "end" }, svg).textContent =
    "step";
}

function highlightRegions(tensors) {
  const roots = new Set(M.buffers.filter((b) => tensors.includes(b.tensor)).map((b) => b.root));
  for (const el of document.querySelectorAll("#mem-svg .region")) {
    el.classList.toggle("sel", roots.has(el.dataset.tensor));
  }
}

// -- page --
document.getElementById("model").textContent = TITLE;
document.getElementById("summary").textContent = `opt level ${R.opt_level}, ${R.backend}, ${R.nodes.length} steps, ` +
  `${(R.total_macs / 1e6).toFixed(1)} MMACs, ${D.original.boxes.filter((b) => b.kind === "node").length} ONNX nodes`;
document.getElementById("show-original").addEventListener("change", (e) => {
  document.getElementById("orig-pane").classList.toggle("hidden", !e.target.checked);
  opt.pz.fit();
});
document.getElementById("fit").addEventListener("click", () => {
  opt.pz.fit();
  orig.pz.fit();
});
window.addEventListener("resize", drawMemory);
opt.pz.fit();
orig.pz.fit();
drawMemory();
document.body.dataset.ready = "1";
