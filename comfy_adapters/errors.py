"""Plain exception names in ComfyUI's error dialog.

ComfyUI titles an error with ``type.__module__ + "." + type.__qualname__``. It imports a custom node pack under
its folder path, so an exception class of this pack read e.g.
"/home/me/ComfyUI/custom_nodes/ltx23_trainer.trainer_core.data.dataset.StrictModeError". Once the nodes are
loaded, every exception class the pack defines is given the module name "ltx23_trainer", so the title reads
"ltx23_trainer.StrictModeError". Built-in exceptions (ValueError, ...) already show their bare name.
"""

from __future__ import annotations

import inspect
import sys

DISPLAY_MODULE = "ltx23_trainer"


def tidy_exception_names(package: str) -> list[type]:
    """Renames the module of every exception class defined in ``package`` (the pack's import name) and its
    submodules; returns the classes changed."""
    changed = []
    for name, module in list(sys.modules.items()):
        if module is None or not (name == package or name.startswith(package + ".")):
            continue
        for cls in vars(module).values():
            if (inspect.isclass(cls) and issubclass(cls, BaseException) and cls.__module__ == name):
                cls.__module__ = DISPLAY_MODULE
                changed.append(cls)
    return changed
