"""Plain-PyTorch core of the LTX-2.3 LoRA trainer.

Nothing here imports ComfyUI: the ComfyUI layer lives in ``nodes/`` and talks to this package through small
protocols, so the core is testable anywhere and runs headless (``python -m trainer_core.demo``).
Submodules are imported where they are used; importing the package itself loads nothing heavy.
"""

__version__ = "0.1.0"
