"""The web extension and the example workflows in ComfyUI's real front end: a local ComfyUI server (CPU, this pack,
a tiny LTX-2.3 checkpoint) driven by headless Chromium through Playwright.

* every example workflow loads from the template route with no missing node, and the prompt the front end makes
  from it equals its API twin;
* every example workflow runs from the page on the tiny model (the user's edits for a test-sized run: small
  buckets, few steps), and what its nodes say is on screen: the Dataset Loader's usable/excluded counts, the saved
  file name, the trainer panel (live, after a reload mid-run, "finished in"), the sweep's verdict and recommended
  strength (as recorded in its scores file) and the Inspector's run card;
* a workflow opened afterwards shows none of another graph's runs or reports, though its node ids are the same.

The tiny checkpoint is linked under the official file name the workflows ask for. It has no text encoder (Gemma 3
12B cannot be made tiny), so the page swaps each workflow's LTXAV text encoder loader for a test-only node
(tests/comfy/fake_clip_pack, ``LTX23Test_FakeClip`` returning comfy_harness.FakeClip), linked into the server's
custom_nodes for this test only.

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
CKPT = "ltx-2.3-22b-dev.safetensors"
TRAIN_STEPS = 40
TRAINER_ID, LOADER_ID, SAVE_ID = 7, 4, 8
SWEEP_ID, INSPECTOR_ID = 4, 3
# A user's edits for a run the tiny model finishes in seconds: small buckets, few steps, a small rank.
TRAINING_EDITS = {
    5: {"buckets": "128x96x17", "window": "start"},
    6: {"decode_check": 1},
    TRAINER_ID: {"steps": TRAIN_STEPS, "rank": 4, "alpha": 4.0, "learning_rate": 0.01, "checkpoint_every": 10,
                 "caption_dropout": 0.0, "mixed_precision": "no"},
}


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
    (base / "models" / "checkpoints" / CKPT).symlink_to(comfy_env.path("models", "checkpoints", tiny_ltx23_ckpt))
    clips = base / "input" / "ltx23_character"
    write_sample_dataset(clips)
    # One file the loader must leave out, with a caption so that it is counted.
    (clips / "broken.mp4").write_bytes(b"not a video")
    (clips / "broken.txt").write_text("a broken clip\n")
    _write_images(base / "input" / "ltx23_style", count=3)
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


def _write_images(folder: Path, count: int) -> None:
    from PIL import Image
    from trainer_core.data.sample_clips import render_frame

    folder.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        Image.fromarray(render_frame(n, 0, 1, 128, 96)).save(folder / f"still_{n}.png")
        (folder / f"still_{n}.txt").write_text(f"a still life number {n}\n")


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



def _open_for_a_run(page, name: str, edits: dict) -> str:
    """Opens the template as a user would, swaps the Gemma loader for the test CLIP and applies ``edits``
    ({node id: {widget: value}}); returns the graph's id."""
    return page.evaluate("""async ([module, name, width, edits]) => {
        await app.refreshComboInNodes?.();
        const wf = await (await fetch(`api/workflow_templates/${module}/${name}.json`)).json();
        await app.loadGraphData(wf, true, true, name);
        const te = app.graph.nodes.find((n) => n.type === "LTXAVTextEncoderLoader");
        if (te) {
            const fake = LiteGraph.createNode("LTX23Test_FakeClip");
            fake.pos = [...te.pos];
            app.graph.add(fake);
            fake.widgets.find((w) => w.name === "width").value = width;
            for (const id of [...(te.outputs[0].links ?? [])]) {
                const link = app.graph.links.get?.(id) ?? app.graph.links[id];
                fake.connect(0, app.graph.getNodeById(link.target_id), link.target_slot);
            }
            app.graph.remove(te);
        }
        for (const [id, values] of Object.entries(edits)) {
            const node = app.graph.getNodeById(Number(id));
            for (const [k, v] of Object.entries(values)) node.widgets.find((w) => w.name === k).value = v;
        }
        app.graph.setDirtyCanvas(true, true);
        return app.graph.id;
    }""", [PACK_DIR_NAME, name, tc.raw_text_width("2.3"), {str(k): v for k, v in edits.items()}])


def _report(page, node_id: int) -> dict | None:
    return page.evaluate("""(id) => { const e = document.querySelector(`.ltx23-report[data-node="${id}"]`);
        return e && e.querySelector(".ltx23-report-body")?.childElementCount ? { text: e.innerText, graph: e.dataset.graph, prompt: e.dataset.prompt }
                                        : null; }""", node_id)


def _panel(page) -> dict:
    return page.evaluate("""(id) => { const e = document.querySelector(`.ltx23-panel[data-node="${id}"]`);
        return e && { state: e.dataset.state, points: +e.dataset.points, text: e.innerText, graph: e.dataset.graph,
                      prompt: e.dataset.prompt }; }""", TRAINER_ID)


def _show(page, node_id: int, zoom: float = 1.0) -> None:
    """Scroll the canvas so a node is on screen (DOM widgets off screen are hidden)."""
    page.evaluate("""([id, zoom]) => { const n = app.graph.getNodeById(id); const ds = app.canvas.ds;
        ds.scale = zoom; ds.offset[0] = 40 / zoom - n.pos[0]; ds.offset[1] = 60 / zoom - n.pos[1];
        app.canvas.setDirty(true, true); }""", [node_id, zoom])
    page.wait_for_timeout(300)


def _wait_report(page, node_id: int, text: str, timeout: float = 240_000) -> dict:
    page.wait_for_function("""([id, text]) => document.querySelector(`.ltx23-report[data-node="${id}"]`)
        ?.innerText.includes(text)""", arg=[node_id, text], timeout=timeout)
    return _report(page, node_id)


def _wait_idle(server, timeout: float = 300) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        queue = server.get("/queue")
        if not queue["queue_running"] and not queue["queue_pending"]:
            return
        time.sleep(1)
    raise AssertionError(f"the queue did not finish within {timeout} s:\n{server.log_tail()}")


def test_character_workflow_reports_and_panel_live_and_after_reload(page, server):
    graph = _open_for_a_run(page, "character_lora_from_clips", TRAINING_EDITS)
    _show(page, TRAINER_ID)
    page.evaluate("app.queuePrompt(0)")
    page.wait_for_function("(id) => +(document.querySelector(`.ltx23-panel[data-node='${id}']`)?.dataset.points) >= 5",
                           arg=TRAINER_ID, timeout=240_000)
    live = _panel(page)
    assert live["state"] in ("running", "checkpoint") and live["graph"] == graph, live
    assert "trainable parameters" in live["text"] and "left (measured)" in live["text"], live["text"]
    page.locator(f'.ltx23-panel[data-node="{TRAINER_ID}"]').screenshot(path=str(_artifacts() / "panel_running.png"))

    # Reload mid-run: the panel comes back with the history (from /ltx23_trainer/status) and keeps going.
    open_app(page)
    _show(page, TRAINER_ID)
    page.wait_for_function("(id) => +(document.querySelector(`.ltx23-panel[data-node='${id}']`)?.dataset.points) > 0",
                           arg=TRAINER_ID, timeout=30_000)
    reloaded = _panel(page)
    assert reloaded["points"] >= live["points"] and reloaded["graph"] == graph, (live, reloaded)
    page.wait_for_function("(id) => ['done', 'error'].includes(document.querySelector(`.ltx23-panel[data-node='${id}']`)"
                           "?.dataset.state)", arg=TRAINER_ID, timeout=300_000)
    _wait_idle(server)
    done = _panel(page)
    assert done["state"] == "done", f"{done}\n{server.log_tail()}"
    assert done["points"] == TRAIN_STEPS and f"step {TRAIN_STEPS} / {TRAIN_STEPS}" in done["text"]
    assert "finished in" in done["text"]

    # Everything each node said is on screen: 4 clips usable, the broken one excluded with its fix.
    loader = _report(page, LOADER_ID)
    assert "4 usable, 1 excluded" in loader["text"] and "broken.mp4" in loader["text"], loader
    assert "Fix:" in loader["text"] and loader["graph"] == graph
    assert "samples from 4 files" in _report(page, 5)["text"]
    assert "128x96x17" in _report(page, 6)["text"]
    saved = _report(page, SAVE_ID)
    assert "saved as ltx23/character_lora_00001.safetensors in models/loras" in saved["text"], saved
    assert (server.base_dir / "models" / "loras" / "ltx23" / "character_lora_00001.safetensors").is_file()
    _show(page, LOADER_ID, zoom=0.6)
    page.screenshot(path=str(_artifacts() / "workflow_character_ran.png"))


def test_a_workflow_opened_afterwards_shows_no_foreign_run_then_runs_its_own(page, server):
    graph = _open_for_a_run(page, "style_lora_from_images", TRAINING_EDITS | {5: {"buckets": "128x96x1"}})
    _show(page, TRAINER_ID)
    # Same node ids as the character workflow (trainer 7, loader 4, save 8), none of its run or reports.
    fresh = _panel(page)
    assert fresh["state"] == "idle" and fresh["points"] == 0 and fresh["prompt"] == "", fresh
    assert all(_report(page, n) is None for n in (LOADER_ID, 5, 6, SAVE_ID))
    page.screenshot(path=str(_artifacts() / "workflow_style_opened.png"))

    page.evaluate("app.queuePrompt(0)")
    saved = _wait_report(page, SAVE_ID, "saved as")
    _wait_idle(server)
    assert "saved as ltx23/style_lora_00001.safetensors in models/loras" in saved["text"], saved
    # The front end may drop an off-screen node's widgets from the page: bring the loader into view to read it.
    _show(page, LOADER_ID)
    assert "3 usable, 0 excluded" in _wait_report(page, LOADER_ID, "usable", timeout=60_000)["text"]
    _show(page, TRAINER_ID)
    page.wait_for_function("""(id) => document.querySelector(`.ltx23-panel[data-node="${id}"]`)?.dataset.state
        === 'done'""", arg=TRAINER_ID, timeout=60_000)
    done = _panel(page)
    assert done["state"] == "done" and done["graph"] == graph

    # Reopening the character workflow shows its own run, not the style run that just finished.
    _open_for_a_run(page, "character_lora_from_clips", {})
    _show(page, TRAINER_ID)
    own = _panel(page)
    assert own["state"] == "done" and "character_lora" in own["text"] and "style_lora" not in own["text"], own
    assert "4 usable, 1 excluded" in _report(page, LOADER_ID)["text"]


def test_sweep_workflow_shows_verdict_and_recommended_strength(page, server):
    import time

    # The quick preset as it ships (18 cells at 320x192x17); distilled mode (8 steps, CFG 1) keeps CI short.
    _open_for_a_run(page, "lora_strength_sweep", {SWEEP_ID: {"mode": "distilled"}})
    _show(page, SWEEP_ID, zoom=0.8)
    started = time.monotonic()
    page.evaluate("app.queuePrompt(0)")
    sweep = _wait_report(page, SWEEP_ID, "recommended strength", timeout=480_000)
    _wait_idle(server)
    (_artifacts() / "sweep_quick_seconds.txt").write_text(f"{time.monotonic() - started:.1f}\n")
    (scores_file,) = (server.base_dir / "output" / "ltx23_sweep").glob("*_scores.json")
    recorded = json.loads(scores_file.read_text())
    expected = "none" if recorded["recommended"] is None else f"{recorded['recommended']:g}"
    verdict = page.evaluate("(id) => document.querySelector(`.ltx23-report[data-node='${id}'] .ltx23-verdict`)"
                            "?.innerText", SWEEP_ID)
    assert verdict and (expected in verdict or recorded["scores"]["warnings"][0] in verdict), (verdict, recorded)
    assert f"{expected} recommended strength" in sweep["text"], sweep["text"]
    assert "strength" in sweep["text"] and "trigger effect" in sweep["text"]  # the score table's header
    inspector = _wait_report(page, INSPECTOR_ID, "recommended strength")
    assert f"{expected} recommended strength" in inspector["text"] and "MATCH" in inspector["text"], inspector
    assert "dataset_fingerprint: " in inspector["text"] and "lr_schedule: linear" in inspector["text"]
    page.screenshot(path=str(_artifacts() / "workflow_sweep_ran.png"))
    page.locator(f'.ltx23-report[data-node="{SWEEP_ID}"]').screenshot(path=str(_artifacts() / "sweep_report.png"))
