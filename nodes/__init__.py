"""The ComfyUI layer: thin V3 nodes over ``trainer_core``.

Each module in ``NODE_MODULES`` defines its node classes and lists them in ``NODES``.
"""

import importlib
import sys

from comfy_api.latest import ComfyExtension

PLAIN_PACKAGE = "ltx23_trainer"

NODE_MODULES = (
    "dataset_loader",
    "caption_dataset",
    "frame_trimmer",
    "latent_precompute",
    "save_comfy_lora",
    "lora_inspector",
    "lora_loader",
    "validation_sweep",
    "lora_trainer",
)


class LTX23TrainerExtension(ComfyExtension):
    async def on_load(self):
        from ..comfy_adapters.progress import register_routes

        register_routes()

    async def get_node_list(self):
        nodes = []
        for name in NODE_MODULES:
            nodes.extend(importlib.import_module(f"{__name__}.{name}").NODES)
        _plain_error_names()
        return nodes


def _plain_error_names() -> None:
    """ComfyUI shows a failed node's exception as ``<class module>.<class name>``, and it imports this pack under
    its folder's file-system path, so ours would read ``/home/me/ComfyUI/custom_nodes/<pack>.trainer_core.data.media
    .MediaError``. Our exception classes are given the package name ``ltx23_trainer`` in place of that path."""
    package = __name__.rsplit(".", 1)[0]
    for name, module in list(sys.modules.items()):
        if not name.startswith(package + "."):
            continue
        for obj in list(vars(module).values()):
            if isinstance(obj, type) and issubclass(obj, BaseException) and obj.__module__ == name:
                obj.__module__ = PLAIN_PACKAGE + name[len(package):]
