"""ComfyUI adapters: how the pack trains through ComfyUI's own model, LoRA patching and progress routes.

The node classes in ``nodes/`` stay thin; everything that touches ComfyUI internals lives here."""
