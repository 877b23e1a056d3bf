"""The web extension and the example workflows in ComfyUI's real front end: a local ComfyUI server (CPU, this pack,
a tiny LTX-2.3 checkpoint) driven by headless Chromium through Playwright.

* every example workflow loads from the template route with no missing node, and the prompt the front end makes
  from it equals its API twin;
* a tiny training run queued from the page fills the LoRA Trainer's panel (chart points, step, estimate), the
  panel survives a page reload mid-run, and ends in the "done" state with every step drawn.

The tiny checkpoint has no text encoder (Gemma 3 12B cannot be made tiny), so Latent Precompute gets its CLIP from
a test-only node package, tests/comfy/fake_clip_pack (``LTX23Test_FakeClip`` returning comfy_harness.FakeClip),
linked into the server's custom_nodes for this test only.

Needs, besides the ComfyUI checkout the other tests need: the Python package ``playwright`` (no browser
download) and a system Chromium (``apt-get install chromium``). Without them every test here skips and says why;
with ``LTX23_REQUIRE_BROWSER=1`` they fail instead. Screenshots go to ``$LTX23_ARTIFACTS`` (default
tests/artifacts/, git-ignored).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import tiny_checkpoint as tc
from comfy_browser import browser_page, missing_requirements, open_app
from comfy_harness import PACK_DIR_NAME, REPO_ROOT
from comfy_server import ComfyServer

WORKFLOWS = REPO_ROOT / "example_workflows"
TRAIN_STEPS = 40
TRAINER_ID = 6


def _artifacts() -> Path:
    folder = Path(os.environ.get("LTX23_ARTIFACTS") or REPO_ROOT / "tests" / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module", autouse=True)
def _browser_available():
    reason = missing_requirements()
    if reason:
        message = f"browser tests need a headless Chromium and Playwright: {reason}"
        if os.environ.get("LTX23_REQUIRE_BROWSER") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


@pytest.fixture(scope="module")
def server(comfy_env, tiny_ltx23_ckpt, tmp_path_factory):
    from trainer_core.data.sample_clips import write_sample_dataset

    base = tmp_path_factory.mktemp("browser_base")
    srv = ComfyServer(comfy_env.root, base, {"ltx23_test_fake_clip": Path(__file__).parent / "fake_clip_pack"})
    (base / "models" / "checkpoints" / tiny_ltx23_ckpt).symlink_to(
        comfy_env.path("models", "checkpoints", tiny_ltx23_ckpt))
    write_sample_dataset(base / "input" / "demo")
    with srv:
        yield srv


@pytest.fixture(scope="module")
def page(server):
    with browser_page(server) as (pg, errors):
        # Records the missing node types the front end finds on every graph load (its afterConfigureGraph hook).
        pg.evaluate("""() => app.registerExtension({ name: "ltx23_test.missing_nodes",
            afterConfigureGraph(missing) { window.__ltx23Missing = (missing ?? []).map((m) => m.type ?? m); } })""")
        yield pg
        # The front end asks the node registry about a missing node type; only the deliberate one may cause that.
        unexpected = [e for e in errors if "/comfy-nodes/LTX23Test_NoSuchNode/" not in e]
        assert not unexpected, "\n".join(unexpected)


def _load_template(page, name: str) -> dict:
    """Load a workflow the way the template browser does (from /api/workflow_templates/...); returns the missing
    node types and the prompt the front end would queue."""
    return page.evaluate("""async ([module, name]) => {
        window.__ltx23Missing = null;
        const wf = await (await fetch(`api/workflow_templates/${module}/${name}.json`)).json();
        await app.loadGraphData(wf, true, true, name);
        const { output } = await app.graphToPrompt();
        const dialogs = [...document.querySelectorAll(".p-dialog")].map((d) => d.innerText);
        return { missing: window.__ltx23Missing, output, dialogs };
    }""", [PACK_DIR_NAME, name])


def test_the_pack_script_is_served_once(server):
    scripts = [s for s in server.get("/extensions") if s.endswith("/ltx23_trainer.js")]
    assert scripts == [f"/extensions/{PACK_DIR_NAME}/ltx23_trainer.js"]


def test_example_workflows_are_listed_as_templates(server):
    listed = server.get("/workflow_templates")
    assert sorted(listed.get(PACK_DIR_NAME, [])) == sorted(p.stem for p in WORKFLOWS.glob("*.json"))


def test_a_missing_node_is_detected(page):
    """The check below is only worth something if a truly missing node shows up in it."""
    result = page.evaluate("""async () => {
        window.__ltx23Missing = null;
        await app.loadGraphData({ last_node_id: 1, last_link_id: 0, nodes: [{ id: 1, type: "LTX23Test_NoSuchNode",
            pos: [0, 0], size: [200, 100], flags: {}, order: 0, mode: 0, inputs: [], outputs: [], properties: {},
            widgets_values: [] }], links: [], groups: [], config: {}, extra: {}, version: 0.4 }, true, true, "x");
        document.querySelectorAll(".p-dialog-close-button").forEach((b) => b.click());
        return window.__ltx23Missing;
    }""")
    assert result == ["LTX23Test_NoSuchNode"]


@pytest.mark.parametrize("name", sorted(p.stem for p in WORKFLOWS.glob("*.json")))
def test_example_workflow_loads_with_no_missing_nodes(page, name):
    result = _load_template(page, name)
    assert result["missing"] == [], f"{name}: missing nodes {result['missing']}"
    assert not [d for d in result["dialogs"] if "missing" in d.lower()], result["dialogs"]
    page.screenshot(path=str(_artifacts() / f"workflow_{name}.png"))
    api = json.loads((WORKFLOWS / "api" / f"{name}.json").read_text())
    queued = {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in result["output"].items()}
    assert queued == {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in api.items()}


def _tiny_prompt() -> dict:
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny-ltx-2.3.safetensors"}},
        "2": {"class_type": "LTX23Test_FakeClip", "inputs": {"width": tc.raw_text_width("2.3")}},
        "3": {"class_type": "LTX23Trainer_DatasetLoader", "inputs": {
            "folder": "demo", "recursive": False, "trigger_word": "sks", "trigger_position": "start",
            "strict": False, "allow_outside_root": False}},
        "4": {"class_type": "LTX23Trainer_FrameTrimmer", "inputs": {
            "dataset": ["3", 0], "buckets": "128x96x17", "target_fps": 0.0, "window": "start", "max_windows": 1,
            "no_upscale": False, "seed": 0, "preview_per_bucket": 3}},
        "5": {"class_type": "LTX23Trainer_LatentPrecompute", "inputs": {
            "samples": ["4", 0], "vae": ["1", 2], "clip": ["2", 0], "model": ["1", 0],
            "cache_folder": "ltx23_trainer/browser_cache", "audio": False, "validation_prompts": "",
            "decode_check": 0, "batch_size": 1, "vae_tiling": "auto", "storage_dtype": "bf16",
            "prune_stale": False}},
        str(TRAINER_ID): {"class_type": "LTX23Trainer_LoraTrainer", "inputs": {
            "model": ["1", 0], "latent_cache": ["5", 0], "recipe": "style", "run_name": "browser",
            "steps": TRAIN_STEPS, "rank": 4, "alpha": 4.0, "learning_rate": 0.01, "trigger_word": "sks",
            "resume": False, "seed": 3, "caption_dropout": 0.0, "checkpoint_every": 10, "keep_checkpoints": 0,
            "targets": "", "schedule": "linear", "warmup_steps": 0, "batch_size": 1, "gradient_accumulation": 1,
            "gradient_checkpointing": True, "mixed_precision": "no", "optimizer": "adamw", "train_audio": False}},
        "7": {"class_type": "PreviewAny", "inputs": {"source": [str(TRAINER_ID), 3]}},
    }


PANEL = f'.ltx23-panel[data-node="{TRAINER_ID}"]'


def _panel(page) -> dict:
    return page.evaluate("""(sel) => { const e = document.querySelector(sel);
        return e && { state: e.dataset.state, points: +e.dataset.points, text: e.innerText }; }""", PANEL)


def _show_trainer(page) -> None:
    """Scroll the canvas so the trainer node and its panel are on screen (DOM widgets off screen are hidden)."""
    page.evaluate("""(id) => { const n = app.graph.getNodeById(id); const ds = app.canvas.ds;
        ds.scale = 1; ds.offset[0] = 120 - n.pos[0]; ds.offset[1] = 60 - n.pos[1]; app.canvas.setDirty(true, true); }""",
                  TRAINER_ID)
    page.wait_for_timeout(300)


def test_training_panel_live_and_after_reload(page, server):
    page.evaluate("(p) => app.loadApiJson(p, 'ltx23_browser_test.json')", _tiny_prompt())
    _show_trainer(page)
    page.evaluate("app.queuePrompt(0)")
    page.wait_for_function("(sel) => +(document.querySelector(sel)?.dataset.points) >= 5", arg=PANEL, timeout=180_000)
    live = _panel(page)
    assert live["state"] in ("running", "checkpoint"), live
    assert "trainable parameters" in live["text"] and "epochs" in live["text"], live["text"]
    page.locator(PANEL).screenshot(path=str(_artifacts() / "panel_before_reload.png"))

    # Reload mid-run: the panel must come back with the history (from /ltx23_trainer/status) and keep going.
    open_app(page)
    _show_trainer(page)
    page.wait_for_function("(sel) => +(document.querySelector(sel)?.dataset.points) > 0", arg=PANEL, timeout=30_000)
    reloaded = _panel(page)
    assert reloaded["points"] >= live["points"], (live, reloaded)
    page.wait_for_function(f"(sel) => +(document.querySelector(sel)?.dataset.points) >= {TRAIN_STEPS * 2 // 3}",
                           arg=PANEL, timeout=120_000)
    page.screenshot(path=str(_artifacts() / "page_running.png"))
    page.locator(PANEL).screenshot(path=str(_artifacts() / "panel_running.png"))

    page.wait_for_function("(sel) => ['done', 'error'].includes(document.querySelector(sel)?.dataset.state)",
                           arg=PANEL, timeout=300_000)
    done = _panel(page)
    assert done["state"] == "done", f"{done}\n{server.log_tail()}"
    assert done["points"] == TRAIN_STEPS
    assert f"step {TRAIN_STEPS} / {TRAIN_STEPS}" in done["text"]
    status = server.get("/ltx23_trainer/status")[str(TRAINER_ID)]
    assert status["state"] == "done" and len(status["losses"]) == TRAIN_STEPS
    page.wait_for_timeout(300)
    page.screenshot(path=str(_artifacts() / "page_done.png"))
    page.locator(PANEL).screenshot(path=str(_artifacts() / "panel_done.png"))
