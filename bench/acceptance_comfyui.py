"""The path a real user runs: a real ComfyUI server (``main.py`` with its default NVIDIA settings, so dynamic VRAM
is on unless a run says ``classic``) with this pack in ``custom_nodes/``, driven through the HTTP API exactly as a
browser does: the bundled ``character_lora_from_clips`` (its API twin, patched only for paths, steps and bucket)
then ``lora_strength_sweep`` on the LoRA it saved.

Model files are written once into ``--work`` (``acceptance_models.py``: official names and layouts, random
weights); clips are rendered at 960x544 and 1280x720 (57 frames). Each run in ``--runs`` starts a fresh server:
``MODE:BUDGET`` with MODE ``dynamic`` (ComfyUI's default) or ``classic`` (``--disable-dynamic-vram``) and BUDGET
``all`` or GiB. A budget is a smaller card: a helper process holds the rest of the GPU (aimdo does not read
``--reserve-vram``, a held allocation binds both modes alike).

Recorded per stage (precompute, training, save, sweep; from the server's websocket ``executing`` events): wall
time; GPU memory used device-wide (nvidia-smi, every 0.5 s: PyTorch's pool plus aimdo's weight pages plus the CUDA
context) and the server's host RSS. Per run: s/step, the pre-flight estimate the trainer published before its
first step against the measured peak, training memory growth (first vs last quarter of the training window), the
number of "lora key not loaded" lines in the server log (the sweep applies the LoRA through ComfyUI's own loader,
as LoraLoaderModelOnly does) and the sweep grid.

    python bench/acceptance_comfyui.py --comfyui-root PATH --work /tmp/acc --runs dynamic:24,dynamic:all,classic:24
    python bench/acceptance_comfyui.py --comfyui-root PATH --work /tmp/acc --tiny   # CPU rehearsal, tiny models
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "comfy"))

STAGES = {"6": "precompute", "7": "training", "8": "save", "4": "sweep"}
TRIGGER_PROMPT = "sks walks through a sunlit park, medium shot"
OFF_TOPIC = "a red sports car driving along a coastal road at sunset"


def write_clips(folder: Path, tiny: bool) -> None:
    import av
    from trainer_core.data.sample_clips import render_frame

    sizes = [(128, 96)] * 2 if tiny else [(960, 544), (960, 544), (1280, 720), (1280, 720)]
    frames = 17 if tiny else 57
    folder.mkdir(parents=True, exist_ok=True)
    for n, (w, h) in enumerate(sizes):
        path = folder / f"clip{n}.mp4"
        if path.exists():
            continue
        with av.open(str(path), "w") as out:
            stream = out.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=24)
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            for i in range(frames):
                frame = av.VideoFrame.from_ndarray(render_frame(n, i, frames, w, h), format="rgb24")
                out.mux(stream.encode(frame))
            out.mux(stream.encode())
        (folder / f"clip{n}.txt").write_text("a red ball moving over a shaded backdrop")


def patched_workflows(tiny: bool, steps: int, sweep_steps: int, run: str) -> tuple[dict, dict]:
    train = json.loads((REPO / "example_workflows" / "api" / "character_lora_from_clips.json").read_text())
    sweep = json.loads((REPO / "example_workflows" / "api" / "lora_strength_sweep.json").read_text())
    train["5"]["inputs"]["buckets"] = "128x96x17" if tiny else "960x544x49"
    train["6"]["inputs"]["cache_folder"] = f"ltx23_trainer/cache/acceptance_{run}"
    train["6"]["inputs"]["validation_prompts"] = TRIGGER_PROMPT
    train["7"]["inputs"].update(steps=steps, checkpoint_every=steps, run_name=f"acceptance_{run}")
    train["8"]["inputs"]["filename_prefix"] = f"acceptance/{run}"
    lora = f"acceptance/{run}_00001.safetensors"
    sweep["3"]["inputs"]["lora_name"] = lora
    sweep["4"]["inputs"].update(
        lora_name=lora, trigger_prompts=TRIGGER_PROMPT, off_topic_prompts=OFF_TOPIC, strengths="0.5, 1.0", seeds=2,
        steps=sweep_steps, filename_prefix=f"acceptance_sweep/{run}",
        **({"width": 64, "height": 64, "frames": 9} if tiny else {}))
    return train, sweep


class Monitor:
    """Samples GPU memory (device-wide) and the server's RSS every 0.5 s, tagged with the node executing."""

    def __init__(self, gpu: bool):
        self.gpu, self.samples, self.node, self.pid = gpu, [], None, None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.stop.wait(0.5):
            used = None
            if self.gpu:
                out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True).stdout.split()
                used = float(out[0]) * 2**20 if out else None
            rss = None
            if self.pid:
                try:
                    rss = int(Path(f"/proc/{self.pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
                except OSError:
                    pass
            self.samples.append((time.time(), self.node, used, rss))


async def _listen(url: str, client_id: str, monitor: Monitor, events: list, done: threading.Event) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{url.replace('http', 'ws')}/ws?clientId={client_id}") as ws:
            while not done.is_set():
                try:
                    msg = await ws.receive(timeout=1.0)
                except asyncio.TimeoutError:
                    continue
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                if data["type"] == "executing":
                    monitor.node = data["data"].get("node")
                events.append((time.time(), data))


def queue_and_wait(server, graph: dict, client_id: str, timeout: float) -> dict:
    prompt_id = server.post("/prompt", {"prompt": graph, "client_id": client_id})["prompt_id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = server.get(f"/history/{prompt_id}").get(prompt_id)
        if entry and entry.get("status", {}).get("completed") is not None:
            status = entry["status"]
            if status.get("status_str") != "success":
                errors = [m for m in status.get("messages", []) if m[0] == "execution_error"]
                raise RuntimeError(f"prompt failed: {json.dumps(errors)[:3000]}")
            return entry
        time.sleep(1.0)
    raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout:.0f} s")


def stage_table(events: list, monitor: Monitor) -> dict:
    starts = [(t, d["data"].get("node")) for t, d in events if d["type"] == "executing"]
    stages = {}
    for (t0, node), (t1, _) in zip(starts, starts[1:]):
        if node not in STAGES:
            continue
        window = [s for s in monitor.samples if t0 <= s[0] <= t1]
        stages[STAGES[node]] = {
            "wall_s": round(t1 - t0, 1),
            "gpu_used_peak_gib": max((s[2] for s in window if s[2] is not None), default=None),
            "rss_peak_gib": max((s[3] for s in window if s[3] is not None), default=None),
        }
        for key in ("gpu_used_peak_gib", "rss_peak_gib"):
            if stages[STAGES[node]][key] is not None:
                stages[STAGES[node]][key] = round(stages[STAGES[node]][key] / 2**30, 2)
    return stages


def training_figures(events: list, monitor: Monitor) -> dict:
    progress = [d["data"] for _, d in events if d["type"] == "ltx23_trainer.progress"]
    running = [p for p in progress if p.get("state") == "running"]
    first = next((p["estimate"] for p in progress if p.get("state") == "estimate"), None) or {}
    last = (running[-1]["estimate"] if running else {}) or {}
    train = [s for s in monitor.samples if s[1] == "7" and s[2] is not None]
    growth = None
    if len(train) >= 40:
        body = train[len(train) // 10:]
        q = len(body) // 4
        growth = float(np.mean([s[2] for s in body[-q:]]) / np.mean([s[2] for s in body[:q]]) - 1)
    return {"steps": running[-1]["step"] if running else 0,
            "sec_per_step": running[-1].get("sec_per_step") if running else None,
            "preflight_gpu_memory": first.get("gpu_memory"), "measured_gpu_memory": last.get("gpu_memory"),
            "losses_first": [p["loss"] for p in running[:5]],
            "train_gpu_used_growth": growth}


def budget_blocker(budget: str) -> subprocess.Popen | None:
    """A process holding (card - budget) of GPU memory, so the server sees a card of ``budget`` GiB."""
    if budget == "all":
        return None
    code = ("import signal, torch; t = torch.cuda.get_device_properties(0).total_memory; "
            f"x = torch.empty(max(0, t - int({float(budget)} * 2**30)), dtype=torch.uint8, device='cuda'); "
            "print('held', flush=True); signal.pause()")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True)
    if proc.stdout.readline().strip() != "held":
        raise RuntimeError("the budget helper could not hold GPU memory")
    return proc


def one_run(args, spec: str, base: Path) -> dict:
    from comfy_server import ComfyServer

    mode, budget = spec.split(":")
    run = spec.replace(":", "_").replace(".", "p")
    extra = {"acceptance_tiny": BENCH / "acceptance_tiny"} if args.tiny else {}
    flags = ["--front-end-root", str(base / "empty_front_end")]
    flags += ["--cpu"] if args.tiny else []
    flags += ["--disable-dynamic-vram"] if mode == "classic" else []
    (base / "empty_front_end").mkdir(exist_ok=True)
    blocker = None if args.tiny else budget_blocker(budget)
    server = ComfyServer(Path(args.comfyui_root), base, extra_custom_nodes=extra, extra_args=flags, cpu=False)
    monitor = Monitor(gpu=not args.tiny)
    events: list = []
    done = threading.Event()
    client_id = uuid.uuid4().hex
    started = time.time()
    try:
        server.start(timeout=600)
        monitor.pid = server.proc.pid
        monitor.thread.start()
        listener = threading.Thread(target=lambda: asyncio.run(_listen(server.url, client_id, monitor, events, done)),
                                    daemon=True)
        listener.start()
        time.sleep(1.0)
        train, sweep = patched_workflows(args.tiny, args.steps, args.sweep_steps, run)
        queue_and_wait(server, train, client_id, args.timeout)
        sweep_entry = queue_and_wait(server, sweep, client_id, args.timeout)
        time.sleep(1.0)
    finally:
        done.set()
        monitor.stop.set()
        log = server.log_tail(10**9)
        server.stop()
        if blocker is not None:
            blocker.terminate()
    outputs = sweep_entry.get("outputs", {})
    return {"run": spec, "total_s": round(time.time() - started, 1), "stages": stage_table(events, monitor),
            "training": training_figures(events, monitor),
            "lora_key_not_loaded": log.count("lora key not loaded:"),
            "dynamic_vram_on": "DynamicVRAM support detected and enabled" in log,
            "sweep_outputs": {k: list(v) for k, v in outputs.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--comfyui-root", required=True)
    ap.add_argument("--work", required=True, help="folder for models, clips and ComfyUI's base directory")
    ap.add_argument("--runs", default="dynamic:24", help="comma-separated MODE:BUDGET (dynamic|classic : all|GiB)")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--sweep-steps", type=int, default=8)
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--tiny", action="store_true", help="tiny models on the CPU: rehearses the whole path")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()

    base = Path(args.work).resolve()
    started = time.time()
    subprocess.run([sys.executable, str(BENCH / "acceptance_models.py"), "--comfyui-root", args.comfyui_root,
                    "--models", str(base / "models")] + ["--tiny"] * args.tiny, check=True)
    write_clips(base / "input" / "ltx23_character", args.tiny)
    print(f"models and clips ready in {time.time() - started:.0f} s", flush=True)
    results = []
    for spec in args.runs.split(","):
        result = one_run(args, spec.strip(), base)
        results.append(result)
        print(json.dumps(result), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
