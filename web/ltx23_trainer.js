// Live panel on the LTX-2.3 LoRA Trainer node: loss chart (raw and EMA), step / total, s/step, ETA, lr, the
// pre-flight estimate, cancel / resume state and the latest validation preview.
//
// Data: the server sends `ltx23_trainer.progress` websocket events (comfy_adapters/progress.py). A running step
// carries only its new loss; state changes carry the whole history. `GET /ltx23_trainer/status` returns the last
// event of recent runs with the whole history, so a reloaded page (or one opened mid-run) draws the run at once.
// Runs are keyed by prompt and node; a panel shows the newest run that its own graph (workflow id) queued, so a
// workflow opened later never shows another graph's run.

import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { drawLossChart } from "./ltx23_chart.js";
import { graphId, graphOfPrompt, trackQueuedPrompts } from "./ltx23_prompts.js";

const TRAINER = "LTX23Trainer_LoraTrainer";
const SWEEP = "LTX23Trainer_ValidationSweep";
const EVENT = "ltx23_trainer.progress";
const STATUS_ROUTE = "/ltx23_trainer/status";
const PANEL_HEIGHT = 440;
const PREVIEW_HEIGHT = 200;

const STATE_LABELS = {
  idle: "Not started",
  estimate: "Starting",
  running: "Training",
  checkpoint: "Training (checkpoint saved)",
  stopped: "Cancelled: checkpoint saved",
  done: "Done",
  error: "Stopped on an error",
};

const ESTIMATE_LABELS = {
  samples: ["samples", (v) => v],
  epochs: ["epochs (passes over the data)", (v) => v],
  lora_modules: ["LoRA modules", (v) => v],
  lora_params: ["trainable parameters", (v) => formatCount(v)],
  resume_from: ["resumed from step", (v) => v],
  bucket: ["largest bucket", (v) => v],
  gpu_memory: ["GPU memory (peak)", (v) => v],
  system_ram: ["system RAM", (v) => v],
  disk: ["disk for checkpoints", (v) => v],
  time: ["time", (v) => v],
};

// Latest state per run ("<prompt id>:<node id>"). Panels read it when they are created, so data that arrived
// before the workflow was (re)loaded is drawn as soon as the node appears.
const runs = new Map();
const panels = new Set();

function formatCount(n) {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} k`;
  return String(n);
}

function formatDuration(sec) {
  if (sec == null || !isFinite(sec)) return "–";
  sec = Math.max(0, Math.round(sec));
  const h = Math.floor(sec / 3600);
  const m = Math.floor((sec % 3600) / 60);
  const s = sec % 60;
  if (h) return `${h}h ${String(m).padStart(2, "0")}m`;
  if (m) return `${m}m ${String(s).padStart(2, "0")}s`;
  return `${s}s`;
}

function formatLoss(v) {
  return v == null || !isFinite(v) ? "–" : v.toFixed(4);
}

function formatSecPerStep(v) {
  if (v == null || !isFinite(v)) return "–";
  return v < 1 ? `${(v * 1000).toFixed(0)} ms` : `${v.toFixed(2)} s`;
}

let refetchTimer = null;
let lastFetch = 0;

async function fetchStatus() {
  lastFetch = Date.now();
  try {
    const res = await api.fetchApi(STATUS_ROUTE);
    if (!res.ok) return;
    const all = await res.json();
    for (const [key, payload] of Object.entries(all)) {
      runs.set(key, { ...runs.get(key), ...payload, losses: payload.losses ?? [], receivedAt: Date.now() });
    }
    redrawAll();
  } catch {
    // The server is restarting or unreachable: the "reconnected" event fetches again.
  }
}

function scheduleFetch() {
  // Events were missed (the page loaded mid-run): the route has the whole history. At most one fetch a second.
  if (refetchTimer) return;
  const wait = Math.max(0, 1000 - (Date.now() - lastFetch));
  refetchTimer = setTimeout(() => {
    refetchTimer = null;
    fetchStatus();
  }, wait);
}

function onProgress(payload) {
  const key = payload.key ?? `${payload.prompt_id}:${payload.node}`;
  const prev = runs.get(key);
  let run;
  if (payload.state === "running" && prev && prev.losses) {
    run = { ...prev, ...payload, losses: prev.losses.concat(payload.losses ?? []) };
  } else {
    run = { ...prev, ...payload, losses: payload.losses ?? prev?.losses ?? [] };
  }
  if (payload.state === "estimate") delete run.preview;
  run.receivedAt = Date.now();
  runs.set(key, run);
  if (run.step != null && run.losses.length !== run.step) scheduleFetch();
  redrawAll();
}

function redrawAll() {
  for (const panel of panels) panel.update();
}

function runGraph(run) {
  // The server reads the workflow id from the prompt; prompts queued without one fall back to this page's record.
  return run.workflow_id ?? graphOfPrompt(run.prompt_id);
}

function runFor(node) {
  // The newest run of this node id that this node's graph queued.
  const gid = graphId(node.graph);
  let best = null;
  for (const run of runs.values()) {
    if (String(run.node) !== String(node.id) || runGraph(run) !== gid) continue;
    if (!best || (run.started ?? 0) >= (best.started ?? 0)) best = run;
  }
  return best;
}

function sweepSource(node) {
  // The trainer whose LoRA a Validation Sweep node samples, when it is wired straight to it.
  const slot = node.findInputSlot?.("lora") ?? -1;
  if (slot < 0) return null;
  const src = node.getInputNode?.(slot);
  return src?.comfyClass === TRAINER ? src : null;
}

function onExecuted(detail) {
  const node = app.graph?.getNodeById?.(detail.node);
  if (!node || node.comfyClass !== SWEEP) return;
  const trainer = sweepSource(node);
  const media = detail.output?.images?.[0] ?? detail.output?.gifs?.[0];
  if (!trainer || !media) return;
  const key = `${detail.prompt_id}:${trainer.id}`;
  if (!runs.has(key)) return; // the trainer of this prompt sent nothing: not a run of this graph
  runs.set(key, { ...runs.get(key), preview: media });
  redrawAll();
}

function onExecutionError(detail) {
  // An exception outside the training loop (out of memory while loading, a bad input) sends no trainer event:
  // without this the panel would show "Training" forever.
  const key = `${detail.prompt_id}:${detail.node_id}`;
  const run = runs.get(key);
  if (!run || !["estimate", "running", "checkpoint"].includes(run.state)) return;
  runs.set(key, { ...run, state: "error", message: detail.exception_message });
  redrawAll();
}

function injectStyle() {
  if (document.getElementById("ltx23-trainer-style")) return;
  const style = document.createElement("style");
  style.id = "ltx23-trainer-style";
  style.textContent = `
.ltx23-panel { box-sizing: border-box; display: flex; flex-direction: column; gap: 4px; padding: 6px;
  font: 11px/1.3 sans-serif; color: var(--input-text, #ddd); background: var(--comfy-input-bg, #222);
  border-radius: 6px; overflow: hidden; }
.ltx23-head { display: flex; justify-content: space-between; font-weight: 600; }
.ltx23-panel[data-state="stopped"] .ltx23-state { color: #e6b450; }
.ltx23-panel[data-state="error"] .ltx23-state { color: #f07070; }
.ltx23-panel[data-state="done"] .ltx23-state { color: #7fd17f; }
.ltx23-bar { height: 4px; background: #ffffff1a; border-radius: 2px; }
.ltx23-bar > div { height: 100%; width: 0; background: #4a9eff; border-radius: 2px; }
.ltx23-chart { flex: 1 1 auto; min-height: 110px; width: 100%; }
.ltx23-stats { display: grid; grid-template-columns: repeat(3, 1fr); gap: 2px 8px; }
.ltx23-stats span { opacity: 0.65; margin-right: 4px; }
.ltx23-estimate { display: grid; grid-template-columns: auto 1fr; gap: 0 8px; margin: 0; opacity: 0.85; }
.ltx23-estimate:empty { display: none; }
.ltx23-estimate dt { opacity: 0.65; }
.ltx23-estimate dd { margin: 0; }
.ltx23-msg { white-space: pre-wrap; word-break: break-all; opacity: 0.85; }
.ltx23-msg:empty { display: none; }
.ltx23-warn { color: #e6b450; }
.ltx23-actions { display: flex; gap: 6px; }
.ltx23-actions button { font-size: 11px; padding: 2px 8px; cursor: pointer; }
.ltx23-preview { display: none; }
.ltx23-preview video, .ltx23-preview img { max-width: 100%; max-height: ${PREVIEW_HEIGHT}px; display: block; margin: auto; }
.ltx23-panel[data-preview="1"] .ltx23-preview { display: block; }
`;
  document.head.appendChild(style);
}

function el(tag, cls, parent) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  parent?.appendChild(e);
  return e;
}

class Panel {
  constructor(node) {
    this.node = node;
    this.root = el("div", "ltx23-panel");
    const head = el("div", "ltx23-head", this.root);
    this.stateEl = el("span", "ltx23-state", head);
    this.stepsEl = el("span", "ltx23-steps", head);
    this.barEl = el("div", null, el("div", "ltx23-bar", this.root));
    this.canvas = el("canvas", "ltx23-chart", this.root);
    const stats = el("div", "ltx23-stats", this.root);
    this.stats = {};
    for (const [key, label] of [["loss", "loss"], ["ema", "EMA"], ["lr", "lr"],
      ["speed", "s/step"], ["eta", "ETA"], ["run", "run"]]) {
      const cell = el("div", null, stats);
      el("span", null, cell).textContent = label;
      this.stats[key] = el("b", null, cell);
    }
    this.estimateEl = el("dl", "ltx23-estimate", this.root);
    this.warnEl = el("div", "ltx23-msg ltx23-warn", this.root);
    this.msgEl = el("div", "ltx23-msg", this.root);
    const actions = el("div", "ltx23-actions", this.root);
    this.stopBtn = el("button", null, actions);
    this.stopBtn.textContent = "Stop (saves a checkpoint)";
    this.stopBtn.title = "Cancels the queue item; the trainer saves a resumable checkpoint first.";
    this.stopBtn.onclick = () => api.interrupt();
    this.resumeBtn = el("button", null, actions);
    this.resumeBtn.textContent = "Set up resume";
    this.resumeBtn.title = "Turns 'resume' on and sets run_name to this run, so queueing continues it.";
    this.resumeBtn.onclick = () => this.setUpResume();
    this.previewEl = el("div", "ltx23-preview", this.root);
    this.previewKey = null;
    this.drawPending = false;
    new ResizeObserver(() => this.scheduleDraw()).observe(this.canvas);
  }

  run() {
    return runFor(this.node) ?? { state: "idle", losses: [] };
  }

  setUpResume() {
    const run = this.run();
    const widget = (name) => this.node.widgets?.find((w) => w.name === name);
    if (widget("run_name") && run.run_name) widget("run_name").value = run.run_name;
    if (widget("resume")) widget("resume").value = true;
    this.node.setDirtyCanvas?.(true, true);
    this.msgEl.textContent = `resume is on for run '${run.run_name}': queue the prompt to continue from step ${run.step}.`;
  }

  height() {
    return PANEL_HEIGHT + (this.root.dataset.preview === "1" ? PREVIEW_HEIGHT : 0);
  }

  update() {
    const run = this.run();
    const total = run.total ?? 0;
    const step = run.step ?? 0;
    const active = ["estimate", "running", "checkpoint"].includes(run.state);
    this.root.dataset.node = String(this.node.id);
    this.root.dataset.graph = graphId(this.node.graph) ?? "";
    this.root.dataset.prompt = run.prompt_id ?? "";
    this.root.dataset.state = run.state;
    this.root.dataset.points = String(run.losses.length);
    const label = STATE_LABELS[run.state] ?? run.state;
    this.stateEl.textContent = run.state === "done" && run.elapsed_sec != null
      ? `${label}: finished in ${formatDuration(run.elapsed_sec)}` : label;
    this.stepsEl.textContent = total ? `step ${step} / ${total}` : "";
    this.barEl.style.width = total ? `${(100 * step) / total}%` : "0";
    this.stats.loss.textContent = formatLoss(run.loss ?? run.losses[run.losses.length - 1]);
    this.stats.ema.textContent = formatLoss(run.loss_ema);
    this.stats.lr.textContent = run.lr != null ? run.lr.toExponential(2) : "–";
    this.stats.speed.textContent = formatSecPerStep(run.sec_per_step);
    // Between steps (slow ones take seconds) the ETA counts down from the last measurement.
    const since = run.receivedAt ? (Date.now() - run.receivedAt) / 1000 : 0;
    this.stats.eta.textContent = active && run.eta_sec != null ? formatDuration(run.eta_sec - since) : "–";
    this.stats.run.textContent = run.run_name ?? "–";
    this.stats.run.title = run.checkpoint ?? "";

    this.estimateEl.replaceChildren();
    for (const [key, value] of Object.entries(run.estimate ?? {})) {
      if (value == null || key === "warnings") continue;
      const [label, fmt] = ESTIMATE_LABELS[key] ?? [key.replaceAll("_", " "), (v) => v];
      el("dt", null, this.estimateEl).textContent = label;
      el("dd", null, this.estimateEl).textContent = String(fmt(value));
    }

    this.msgEl.textContent = this.message(run);
    this.warnEl.textContent = (run.estimate?.warnings ?? []).join("\n");
    this.stopBtn.style.display = active ? "" : "none";
    this.resumeBtn.style.display = (run.state === "stopped" || run.state === "error") && run.run_name ? "" : "none";
    this.updatePreview(run.preview);
    this.scheduleDraw();
  }

  message(run) {
    switch (run.state) {
      case "stopped":
        return `${run.message ?? "stopped"}\nTo continue: 'Set up resume', then queue the prompt.`;
      case "error":
        return run.message ?? "";
      case "done":
        return run.checkpoint ? `LoRA: ${run.checkpoint}` : "";
      case "checkpoint":
      case "running":
        return run.checkpoint ? `last checkpoint: ${run.checkpoint}` : "";
      default:
        return "";
    }
  }

  updatePreview(media) {
    const key = media ? `${media.type}/${media.subfolder}/${media.filename}` : null;
    if (key === this.previewKey) return;
    this.previewKey = key;
    this.previewEl.replaceChildren();
    this.root.dataset.preview = media ? "1" : "0";
    if (media) {
      const params = new URLSearchParams({ filename: media.filename, subfolder: media.subfolder ?? "",
        type: media.type ?? "output" });
      const url = api.apiURL(`/view?${params}`);
      if (/\.(mp4|webm|mov)$/i.test(media.filename)) {
        const video = el("video", null, this.previewEl);
        Object.assign(video, { src: url, muted: true, loop: true, autoplay: true, controls: true });
      } else {
        el("img", null, this.previewEl).src = url;
      }
      el("div", null, this.previewEl).textContent = "latest validation sweep";
    }
    this.node.setSize([this.node.size[0], Math.max(this.node.size[1], this.node.computeSize()[1])]);
    this.node.setDirtyCanvas?.(true, true);
  }

  scheduleDraw() {
    // Steps can arrive faster than frames; draw once per animation frame.
    if (this.drawPending) return;
    this.drawPending = true;
    requestAnimationFrame(() => {
      this.drawPending = false;
      this.draw();
    });
  }

  draw() {
    drawLossChart(this.canvas, this.run());
  }
}

function attachPanel(node) {
  injectStyle();
  const panel = new Panel(node);
  const widget = node.addDOMWidget("ltx23_training_panel", "ltx23_panel", panel.root, {
    serialize: false,
    hideOnZoom: false,
    getMinHeight: () => panel.height(),
  });
  // Not part of the prompt or of widgets_values: the workflow file stays the same with or without the panel.
  widget.serialize = false;
  panels.add(panel);
  const onRemoved = node.onRemoved;
  node.onRemoved = function () {
    panels.delete(panel);
    return onRemoved?.apply(this, arguments);
  };
  node.setSize([Math.max(node.size[0], 400), node.computeSize()[1]]);
  panel.update();
}

app.registerExtension({
  name: "ltx23_trainer.panel",
  async setup() {
    trackQueuedPrompts();
    // The ETA counts down between step events.
    setInterval(() => {
      for (const panel of panels) if (["running", "checkpoint"].includes(panel.run().state)) panel.update();
    }, 1000);
    api.addEventListener(EVENT, (e) => onProgress(e.detail));
    api.addEventListener("executed", (e) => onExecuted(e.detail));
    api.addEventListener("execution_error", (e) => onExecutionError(e.detail));
    // After a server restart or a dropped connection the events in between are lost; the route has them.
    api.addEventListener("reconnected", () => fetchStatus());
    await fetchStatus();
  },
  nodeCreated(node) {
    if (node.comfyClass === TRAINER) attachPanel(node);
  },
  afterConfigureGraph() {
    // Nodes get their saved ids after nodeCreated: draw each panel again with its run.
    for (const panel of panels) panel.update();
  },
});
