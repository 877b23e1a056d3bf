"""The ComfyUI layer: thin V3 nodes over ``trainer_core``.

Each module in ``NODE_MODULES`` defines its node classes and lists them in ``NODES``.
"""

import importlib

from comfy_api.latest import ComfyExtension

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
        from ..comfy_adapters.errors import tidy_exception_names

        nodes = []
        for name in NODE_MODULES:
            nodes.extend(importlib.import_module(f"{__name__}.{name}").NODES)
        # After the imports, so every module that defines an exception is loaded.
        tidy_exception_names(__name__.rsplit(".", 1)[0])
        return nodes

