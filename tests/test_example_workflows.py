"""The example workflows, without ComfyUI: every file is valid JSON in the right format (UI/LiteGraph 0.4 in
example_workflows/, API format in example_workflows/api/), links are consistent, the UI and API twins describe the
same graph, and they use the official LTX-2.3 model file names.

tests/comfy/test_example_workflows.py checks the node types and input names against ComfyUI's registry;
tests/comfy/test_browser.py loads every UI file in the real front end and compares its prompt with the API twin.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

WORKFLOWS = Path(__file__).resolve().parents[1] / "example_workflows"
UI_FILES = sorted(WORKFLOWS.glob("*.json"))
# Front-end-only nodes: saved in the UI file, never sent to the server.
VIRTUAL_NODES = {"Note", "MarkdownNote", "PrimitiveNode", "Reroute"}
MODEL_FILES = {
    ("CheckpointLoaderSimple", "ckpt_name"): "ltx-2.3-22b-dev.safetensors",
    ("LTXAVTextEncoderLoader", "ckpt_name"): "ltx-2.3-22b-dev.safetensors",
    ("LTXAVTextEncoderLoader", "text_encoder"): "gemma_3_12B_it_fp4_mixed.safetensors",
    ("LTXVAudioVAELoader", "ckpt_name"): "ltx-2.3-22b-dev.safetensors",
}
REQUIRED = {"character_lora_from_clips", "style_lora_from_images", "ic_lora_from_pairs",
            "audio_video_lora_from_clips"}
BYPASSED = 4
# Optional steps a workflow offers bypassed (the user turns them on with Ctrl+B): workflow -> node types.
OPTIONAL_STEPS = {"character_lora_from_clips": {"LTX23Trainer_CaptionDataset"}}


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def ui_to_api(ui: dict) -> dict:
    """The prompt a UI workflow queues: widget values by the names the inputs list gives them (in widget order),
    links as ``[source id, output slot]``. A bypassed node is left out and its output is fed from its input of
    the same type, as the front end does. Valid for graphs without subgraphs, muted nodes or
    control_after_generate widgets, which the examples avoid."""
    links = {link[0]: link for link in ui["links"]}
    by_id = {node["id"]: node for node in ui["nodes"]}

    def source(link_id):
        _, src, src_slot, _, _, kind = links[link_id]
        node = by_id[src]
        if node["mode"] != BYPASSED:
            return [str(src), src_slot]
        (through,) = [i["link"] for i in node["inputs"] if i["type"] == kind and i.get("link") is not None]
        return source(through)

    prompt = {}
    for node in ui["nodes"]:
        if node["type"] in VIRTUAL_NODES or node["mode"] == BYPASSED:
            continue
        widget_names = [i["widget"]["name"] for i in node.get("inputs", []) if i.get("widget")]
        values = node.get("widgets_values") or []
        assert len(values) == len(widget_names), (
            f"node {node['id']} ({node['type']}): {len(values)} widget values for widgets {widget_names}")
        # The upload button of file pickers (LoadVideo) is saved with the node but never sent in the prompt.
        inputs = {k: v for k, v in zip(widget_names, values) if k != "upload"}
        for slot in node.get("inputs", []):
            if slot.get("link") is not None:
                inputs[slot["name"]] = source(slot["link"])
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt


def test_the_issue_s_workflows_exist():
    assert REQUIRED <= {p.stem for p in UI_FILES}


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.stem)
def test_ui_workflow_format_and_links(path):
    ui = _load(path)
    for key in ("id", "revision", "last_node_id", "last_link_id", "nodes", "links", "groups", "config", "extra"):
        assert key in ui, f"{path.name}: no '{key}'"
    assert ui["version"] == 0.4
    nodes = {n["id"]: n for n in ui["nodes"]}
    assert len(nodes) == len(ui["nodes"]), "duplicate node ids"
    assert max(nodes) <= ui["last_node_id"]
    link_ids = [link[0] for link in ui["links"]]
    assert len(set(link_ids)) == len(link_ids), "duplicate link ids"
    assert max(link_ids) <= ui["last_link_id"]
    for node in nodes.values():
        for key in ("id", "type", "pos", "size", "mode", "inputs", "outputs", "properties"):
            assert key in node, f"node {node.get('id')}: no '{key}'"
        optional = node["type"] in OPTIONAL_STEPS.get(path.stem, set())
        assert node["mode"] == (BYPASSED if optional else 0), f"node {node['id']} ({node['type']}): mode {node['mode']}"
    for optional in OPTIONAL_STEPS.get(path.stem, set()):
        assert optional in {n["type"] for n in nodes.values()}, f"{path.name}: no optional {optional} step"
    for link_id, src, src_slot, dst, dst_slot, kind in ui["links"]:
        out = nodes[src]["outputs"][src_slot]
        inp = nodes[dst]["inputs"][dst_slot]
        assert link_id in (out.get("links") or []), f"link {link_id} missing from node {src} output {src_slot}"
        assert inp.get("link") == link_id, f"link {link_id} missing from node {dst} input {dst_slot}"
        assert kind == out["type"], f"link {link_id}: type {kind} but output is {out['type']}"
        assert inp["type"] in (kind, "*") or set(inp["type"].split(",")) >= {kind}, (
            f"link {link_id}: {kind} into input '{inp['name']}' of type {inp['type']}")
    listed = {i for n in nodes.values() for out in n["outputs"] for i in (out.get("links") or [])}
    assert listed == set(link_ids), "the outputs' link lists and the links table differ"
    for node in nodes.values():
        for slot in node["inputs"]:
            assert slot.get("link") is None or slot["link"] in link_ids, f"node {node['id']}: dangling link"


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.stem)
def test_ui_and_api_twins_agree(path):
    api_path = WORKFLOWS / "api" / path.name
    assert api_path.is_file(), f"{path.name} has no API twin at example_workflows/api/{path.name}"
    api = _load(api_path)
    for node_id, node in api.items():
        assert set(node) <= {"class_type", "inputs", "_meta"}, f"API node {node_id}: unexpected keys {set(node)}"
        for name, value in node["inputs"].items():
            if isinstance(value, list):
                assert len(value) == 2 and value[0] in api, f"API node {node_id} input {name}: bad link {value}"
    assert ui_to_api(_load(path)) == {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in api.items()}


def test_every_api_file_has_a_ui_twin():
    assert {p.name for p in (WORKFLOWS / "api").glob("*.json")} == {p.name for p in UI_FILES}


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.stem)
def test_official_model_file_names(path):
    for node_id, node in _load(WORKFLOWS / "api" / path.name).items():
        for name, value in node["inputs"].items():
            want = MODEL_FILES.get((node["class_type"], name))
            assert want is None or value == want, f"node {node_id} {node['class_type']}.{name} = {value!r}, not {want}"
