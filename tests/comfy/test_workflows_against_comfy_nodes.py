"""Every example workflow against ComfyUI's node registry (what /object_info serves): each node type is registered
(core or this pack), each input and widget name exists in that node's INPUT_TYPES, links go to socket inputs,
and choice widgets hold one of their options (model and input file names excepted: a test base has no full-size
models and no user videos)."""

from __future__ import annotations

import json

import pytest
from comfy_harness import REPO_ROOT

WORKFLOWS = REPO_ROOT / "example_workflows"
VIRTUAL_NODES = {"Note", "MarkdownNote", "PrimitiveNode", "Reroute"}
MODEL_WIDGETS = {"ckpt_name", "text_encoder", "lora_name", "file"}


def _files(folder):
    return sorted(folder.glob("*.json"))


def _spec(mappings, class_type):
    spec = mappings[class_type].INPUT_TYPES()
    return {name: entry for section in ("required", "optional") for name, entry in spec.get(section, {}).items()}


def _check_value(class_type, name, entry, value):
    kind = entry[0]
    if isinstance(kind, list) or kind == "COMBO":
        options = kind if isinstance(kind, list) else entry[1].get("options", [])
        if name not in MODEL_WIDGETS:
            assert value in options, f"{class_type}.{name} = {value!r} is not one of {options}"
    elif kind in ("INT", "FLOAT"):
        opts = entry[1] if len(entry) > 1 else {}
        assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{class_type}.{name} = {value!r}"
        assert opts.get("min", value) <= value <= opts.get("max", value), f"{class_type}.{name} = {value} out of range"
    elif kind == "BOOLEAN":
        assert isinstance(value, bool), f"{class_type}.{name} = {value!r}"
    elif kind == "STRING":
        assert isinstance(value, str), f"{class_type}.{name} = {value!r}"


@pytest.mark.parametrize("path", _files(WORKFLOWS / "api"), ids=lambda p: p.stem)
def test_api_workflow_matches_the_registry(path, comfy_pack):
    import nodes

    for node_id, node in json.loads(path.read_text()).items():
        class_type = node["class_type"]
        assert class_type in nodes.NODE_CLASS_MAPPINGS, f"node {node_id}: {class_type} is not registered"
        spec = _spec(nodes.NODE_CLASS_MAPPINGS, class_type)
        for name, value in node["inputs"].items():
            assert name in spec, f"node {node_id}: {class_type} has no input '{name}' (has {sorted(spec)})"
            if not isinstance(value, list):
                _check_value(class_type, name, spec[name], value)
        required = set(nodes.NODE_CLASS_MAPPINGS[class_type].INPUT_TYPES().get("required", {}))
        assert required <= set(node["inputs"]), f"node {node_id}: {class_type} lacks {required - set(node['inputs'])}"


@pytest.mark.parametrize("path", _files(WORKFLOWS), ids=lambda p: p.stem)
def test_ui_workflow_matches_the_registry(path, comfy_pack):
    import nodes

    ui = json.loads(path.read_text())
    for node in ui["nodes"]:
        if node["type"] in VIRTUAL_NODES:
            continue
        assert node["type"] in nodes.NODE_CLASS_MAPPINGS, f"node {node['id']}: {node['type']} is not registered"
        spec = _spec(nodes.NODE_CLASS_MAPPINGS, node["type"])
        for slot in node["inputs"]:
            if slot["name"] == "upload" and any(entry[1].get(f"{kind}_upload") for entry in spec.values()
                                                if len(entry) > 1 for kind in ("image", "video", "audio")):
                continue  # the front end's upload button for a file picker, not a node input
            assert slot["name"] in spec, f"node {node['id']}: {node['type']} has no input '{slot['name']}'"
            if slot.get("widget"):
                assert slot["widget"]["name"] == slot["name"]
        outputs = nodes.NODE_CLASS_MAPPINGS[node["type"]].RETURN_TYPES
        assert [o["type"] for o in node["outputs"]] == list(outputs), f"node {node['id']}: outputs differ"
