"""LTX-2.3 LoRA Trainer: ComfyUI node pack entry point.

ComfyUI imports this module at start-up. Nothing heavy is imported here, and a broken install must not stop
ComfyUI from starting: any import problem is logged with what to do about it, and the pack registers no nodes.
"""

import logging
import os

WEB_DIRECTORY = "./web"

_log = logging.getLogger("ltx23_trainer")


async def comfy_entrypoint():
    try:
        from .nodes import LTX23TrainerExtension
    except Exception as exc:  # noqa: BLE001 - ComfyUI's start-up must survive any failure of this pack
        _log.error(
            "[LTX-2.3 Trainer] could not load its nodes (%s: %s). Install the pack's requirements into "
            "ComfyUI's Python: `python -m pip install -r %s`, then restart ComfyUI.",
            type(exc).__name__, exc, os.path.join(os.path.dirname(os.path.abspath(__file__)), "requirements.txt"),
            exc_info=True,
        )
        from comfy_api.latest import ComfyExtension

        class _NoNodes(ComfyExtension):
            async def get_node_list(self):
                return []

        return _NoNodes()
    return LTX23TrainerExtension()
