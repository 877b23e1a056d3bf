// Node reports: any node whose execution returns `ui.ltx23_report` (comfy_adapters/report.py: report_ui) gets a
// compact panel on the node: the verdict, the counts, each problem with its fix, an optional score table, and the
// full text under "details" (scrolling). Drawn here, so it does not depend on the front end's handling of ui.text.
//
// Reports are kept per (graph id, node id) of the graph that queued the prompt (ltx23_prompts.js), so switching
// or reopening workflows never shows another graph's report on a node that happens to have the same id.

import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { graphId, graphOfPrompt, trackQueuedPrompts } from "./ltx23_prompts.js";

const UI_KEY = "ltx23_report";
const STORE = "ltx23_trainer.reports";
const MAX_HEIGHT = 320;
const reports = new Map(loadStore());
const widgets = new Map(); // node -> ReportView

function loadStore() {
  try {
    return JSON.parse(sessionStorage.getItem(STORE) ?? "[]");
  } catch {
    return [];
  }
}

function saveStore() {
  // Newest 40 reports survive a page reload; older ones are still in the nodes' report outputs.
  const entries = [...reports].slice(-40);
  try {
    sessionStorage.setItem(STORE, JSON.stringify(entries));
  } catch {
    // Too large for session storage: reports stay in memory for this page.
  }
}

function key(gid, nodeId) {
  return `${gid}:${nodeId}`;
}

function injectStyle() {
  if (document.getElementById("ltx23-report-style")) return;
  const style = document.createElement("style");
  style.id = "ltx23-report-style";
  style.textContent = `
.ltx23-report { box-sizing: border-box; display: flex; flex-direction: column; gap: 4px; padding: 6px;
  font: 11px/1.35 sans-serif; color: var(--input-text, #ddd); background: var(--comfy-input-bg, #222);
  border-radius: 6px; overflow: auto; max-height: ${MAX_HEIGHT}px; }
.ltx23-report-body { display: flex; flex-direction: column; gap: 4px; }
.ltx23-verdict { font-weight: 600; font-size: 12px; }
.ltx23-report[data-tone="ok"] .ltx23-verdict { color: #7fd17f; }
.ltx23-report[data-tone="warn"] .ltx23-verdict { color: #e6b450; }
.ltx23-report[data-tone="error"] .ltx23-verdict { color: #f07070; }
.ltx23-counts { display: flex; flex-wrap: wrap; gap: 3px; }
.ltx23-chip { padding: 1px 6px; border-radius: 8px; background: #ffffff14; white-space: nowrap; }
.ltx23-chip b { margin-right: 3px; }
.ltx23-chip[data-tone="ok"] b { color: #7fd17f; }
.ltx23-chip[data-tone="warn"] b { color: #e6b450; }
.ltx23-chip[data-tone="error"] b { color: #f07070; }
.ltx23-lines div { opacity: 0.85; word-break: break-all; }
.ltx23-table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
.ltx23-table th, .ltx23-table td { padding: 1px 6px; text-align: right; border-bottom: 1px solid #ffffff14; }
.ltx23-table th { font-weight: 600; opacity: 0.75; }
.ltx23-table tr[data-highlight="1"] td { background: #4a9eff33; font-weight: 600; }
.ltx23-problems { margin: 0; padding-left: 14px; }
.ltx23-problems li[data-level="error"] { color: #f07070; }
.ltx23-problems li[data-level="warning"] { color: #e6b450; }
.ltx23-problems .ltx23-fix { color: var(--input-text, #ddd); opacity: 0.85; }
.ltx23-report details pre { margin: 2px 0 0; white-space: pre-wrap; word-break: break-all; max-height: 180px;
  overflow: auto; font: 10px/1.3 monospace; }
`;
  document.head.appendChild(style);
}

function el(tag, cls, parent, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = String(text);
  parent?.appendChild(e);
  return e;
}

function render(root, report) {
  const body = root.__ltx23Body;
  body.replaceChildren();
  if (!report) return;
  root.dataset.tone = report.tone ?? "info";
  root = body;
  if (report.verdict) el("div", "ltx23-verdict", root, report.verdict);
  if (report.counts?.length) {
    const counts = el("div", "ltx23-counts", root);
    for (const [label, value, tone] of report.counts) {
      const chip = el("span", "ltx23-chip", counts);
      chip.dataset.tone = tone;
      el("b", null, chip, value);
      chip.append(` ${label}`);
    }
  }
  if (report.lines?.length) {
    const lines = el("div", "ltx23-lines", root);
    for (const line of report.lines) el("div", null, lines, line);
  }
  if (report.table?.rows?.length) {
    const table = el("table", "ltx23-table", root);
    const head = el("tr", null, el("thead", null, table));
    for (const c of report.table.columns) el("th", null, head, c);
    const body = el("tbody", null, table);
    report.table.rows.forEach((row, i) => {
      const tr = el("tr", null, body);
      tr.dataset.highlight = i === report.table.highlight ? "1" : "0";
      for (const v of row) el("td", null, tr, v == null ? "–" : v);
    });
  }
  if (report.problems?.length) {
    const list = el("ul", "ltx23-problems", root);
    for (const p of report.problems) {
      const li = el("li", null, list);
      li.dataset.level = p.level;
      el("div", null, li, p.text);
      if (p.fix) el("div", "ltx23-fix", li, `Fix: ${p.fix}`);
    }
  }
  if (report.text) {
    const details = el("details", null, root);
    el("summary", null, details, "details");
    el("pre", null, details, report.text);
  }
}

function fit(node) {
  node.setSize([Math.max(node.size[0], 360), Math.max(node.size[1], node.computeSize()[1])]);
  node.setDirtyCanvas?.(true, true);
}

function view(node) {
  let root = widgets.get(node);
  if (root) return root;
  injectStyle();
  root = el("div", "ltx23-report");
  root.__ltx23Body = el("div", "ltx23-report-body", root);
  root.dataset.node = String(node.id);
  // The node grows to its report once the report is laid out: nodes off screen have hidden DOM widgets, so their
  // size is only known when they scroll into view (or "details" opens).
  let height = 0;
  new ResizeObserver(() => {
    const h = root.__ltx23Body.offsetHeight;
    if (!h || h === height) return;
    height = h;
    fit(node);
  }).observe(root.__ltx23Body);
  const widget = node.addDOMWidget("ltx23_report", "ltx23_report", root, {
    serialize: false,
    hideOnZoom: false,
    getMinHeight: () => (root.__ltx23Body.childElementCount ? Math.min(MAX_HEIGHT, height + 16) : 0),
    getMaxHeight: () => MAX_HEIGHT,
  });
  // Not part of the prompt or of widgets_values: the workflow file stays the same with or without a report.
  widget.serialize = false;
  widgets.set(node, root);
  const onRemoved = node.onRemoved;
  node.onRemoved = function () {
    widgets.delete(node);
    return onRemoved?.apply(this, arguments);
  };
  return root;
}

function show(node) {
  const report = reports.get(key(graphId(node.graph), node.id));
  const existing = widgets.get(node);
  if (!report && !existing) return;
  const root = view(node);
  root.dataset.graph = graphId(node.graph) ?? "";
  root.dataset.prompt = report?.prompt_id ?? "";
  render(root, report);
}

function onExecuted(detail) {
  const report = detail?.output?.[UI_KEY]?.[0];
  if (!report) return;
  const gid = graphOfPrompt(detail.prompt_id);
  if (!gid) return; // not queued by this page: it belongs to no graph here
  const nodeId = String(detail.display_node ?? detail.node);
  reports.delete(key(gid, nodeId));
  reports.set(key(gid, nodeId), { ...report, prompt_id: detail.prompt_id });
  saveStore();
  if (graphId(app.graph) !== gid) return;
  const node = app.graph.getNodeById(nodeId);
  if (node) show(node);
}

app.registerExtension({
  name: "ltx23_trainer.report",
  setup() {
    trackQueuedPrompts();
    api.addEventListener("executed", (e) => onExecuted(e.detail));
  },
  afterConfigureGraph() {
    // A workflow was opened or switched to: its nodes are new objects; show the reports of this graph only.
    for (const node of app.graph?.nodes ?? []) show(node);
  },
});
