"""Training progress for the ComfyUI front end: the progress bar, live websocket events, and a small status
route so a reloaded page can pick a running (or finished) training back up.

Event ``ltx23_trainer.progress`` (and ``GET /ltx23_trainer/status`` -> ``{node_id: last event}``) carries:
``node, state ("estimate"|"running"|"checkpoint"|"stopped"|"done"|"error"), step, total, loss, loss_ema, lr,
sec_per_step, eta_sec, losses (the whole history on state changes, the new point otherwise), estimate, message,
checkpoint``, and once ``begin`` ran: ``run_name`` (the folder under output/ltx23_trainer/runs, which is what
"resume" needs), ``ema_beta`` (so a client can redraw the loss EMA from ``losses``).

The status route keeps the whole history, so the panel in ``web/`` redraws a run after a page reload.
"""

from __future__ import annotations

import json
import os
import threading

from ..trainer_core.training.estimate import format_bytes

EVENT = "ltx23_trainer.progress"
EVENTS_FILE = "events.jsonl"
_status: dict[str, dict] = {}
_lock = threading.Lock()


def status_snapshot() -> dict[str, dict]:
    with _lock:
        return {k: dict(v) for k, v in _status.items()}


def _server():
    try:
        from server import PromptServer
    except ImportError:
        return None
    return getattr(PromptServer, "instance", None)


def register_routes() -> None:
    server = _server()
    if server is None or getattr(register_routes, "done", False):
        return
    from aiohttp import web

    @server.routes.get("/ltx23_trainer/status")
    async def status(request):
        return web.json_response(status_snapshot())

    @server.routes.get("/ltx23_trainer/runs/{name}/status")
    async def run_status(request):
        """A headless (torchrun) run's progress, from the events file in its run folder."""
        import folder_paths

        name = os.path.basename(request.match_info["name"])
        path = os.path.join(folder_paths.get_output_directory(), "ltx23_trainer", "runs", name, EVENTS_FILE)
        event = read_events(path)
        return web.json_response(event) if event else web.json_response({"error": f"no run {name}"}, status=404)

    register_routes.done = True


class TrainingProgress:
    """Forwards ``trainer_core`` events to ComfyUI: ProgressBar with loss in its text, websocket events, status."""

    def __init__(self, node_id: str | None, total_steps: int, events_path: str | None = None):
        import comfy.utils

        self.node_id = node_id or "headless"
        self.bar = comfy.utils.ProgressBar(total_steps, node_id=node_id)
        self.events_path = events_path
        self.losses: list[float] = []
        self.estimate: dict | None = None
        self.run: dict = {}

    def begin(self, trainer, run_dir: str, preflight=None) -> None:
        """Publishes the pre-flight estimate (``trainer_core.training.estimate.Estimate``, optional) before the first step.
        A resumed run's loss history comes from its checkpoint, so the chart continues where it stopped."""
        cfg, data = trainer.cfg, trainer.data
        params = sum(p.numel() for p in trainer.lora.trainable_parameters())
        per_step = cfg.batch_size * cfg.gradient_accumulation
        self.losses = list(trainer.losses)
        self.run = {"run_name": os.path.basename(run_dir), "ema_beta": cfg.loss_ema_beta}
        self.estimate = {
            "samples": len(data),
            "epochs": round(cfg.steps * per_step / len(data), 1),
            "lora_modules": len(trainer.lora.names),
            "lora_params": params,
            "resume_from": trainer.step or None,
        }
        if preflight is not None:
            self.estimate.update(preflight_fields(preflight))
        self.publish("estimate", step=trainer.step, total=cfg.steps, loss_ema=trainer.loss_ema)

    def publish(self, state: str, **fields) -> None:
        payload = {"node": self.node_id, "state": state, "estimate": self.estimate, **self.run, **fields}
        with _lock:
            stored = dict(payload)
            stored["losses"] = list(self.losses)
            _status[self.node_id] = stored
        if self.events_path:
            append_event(self.events_path, stored if state != "running" else payload)
        server = _server()
        if server is not None:
            if state != "running":
                payload["losses"] = list(self.losses)
            server.send_sync(EVENT, payload, server.client_id)

    def on_event(self, event) -> None:
        if event.kind == "step":
            self.losses.append(event.loss)
            self.bar.update_absolute(event.step, event.total_steps)
            self.publish("running", step=event.step, total=event.total_steps, loss=event.loss,
                         loss_ema=event.loss_ema, lr=event.lr, sec_per_step=event.sec_per_step,
                         eta_sec=event.eta_sec, losses=[event.loss])
        elif event.kind in ("checkpoint", "stopped", "done", "error"):
            self.publish(event.kind, step=event.step, total=event.total_steps, loss_ema=event.loss_ema,
                         checkpoint=event.path, message=event.message)


def append_event(path: str, payload: dict) -> None:
    """One JSON line per event: a headless run's log, which ``read_events`` turns back into the panel's status."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(payload) + "\n")


def read_events(path: str) -> dict | None:
    """The panel's status of a headless run: its last event, with the loss history rebuilt from every step."""
    last, losses = None, []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue  # a line the writer had not finished yet
                if event.get("state") == "running":
                    losses.extend(event.get("losses") or [])
                elif event.get("losses") is not None:
                    losses = list(event["losses"])
                last = event
    except FileNotFoundError:
        return None
    if last is not None:
        last = {**last, "losses": losses}
    return last


def preflight_fields(est) -> dict:
    """The estimate as short display strings, plus any problem it found (not enough RAM or disk)."""
    source = "measured" if est.measured else "estimated"
    return {
        "bucket": f"{est.bucket} ({est.video_tokens} tokens)",
        "gpu_memory": format_bytes(est.vram.peak),
        "system_ram": format_bytes(est.ram_bytes),
        "disk": f"{format_bytes(est.disk_bytes)}, {format_bytes(est.checkpoint_bytes)} per checkpoint",
        "time": f"{est.sec_per_step:.2f} s/step, ~{est.eta_sec / 60:.0f} min ({source})",
        "warnings": [p.line() for p in est.problems] or None,
    }
