"""The on-disk latent cache: layout, keys, atomic writes, and the reader the trainer consumes.

Layout under the cache folder::

    manifest.json                 samples in order, their files, shapes and the encoders that made them
    media/<key>.safetensors       one per sample: ``video_latents`` [128,F',H',W'] (+ ``reference_latents``)
    audio/<key>.safetensors       one per sample when audio is on: ``audio_latents`` [8,T,16], or an empty
                                  marker when the clip has no audio track
    text/<key>.safetensors        one per distinct text: ``context`` [L, D_video + D_audio], processed

Files are content-addressed: the key hashes everything that changes the tensors (pixels side of
``Sample.cache_key()``, VAE / audio VAE / text-conditioner identities, storage dtype, the text). A processed
LTX-2.3 context is ~12.6 MB in bf16 against ~0.9 MB for a 960x544x49 latent, and windows of one clip usually share
a caption, so text is stored once per distinct text rather than once per sample. Caption, video and audio keys are
separate so that editing a caption re-encodes text only, and switching audio on re-encodes audio only.

Every file carries its key in the safetensors header; a file whose header does not match (or cannot be read) is
treated as missing, which makes interrupted and half-copied caches safe to resume. The manifest also records each
file's size and sha256 (``integrity``), so a file damaged in place is found before training and re-encoded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections import OrderedDict
from typing import Iterable

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ..atomic import atomic_path, is_temp_file, write_text_atomic
from ..diskspace import tensor_bytes
from ..data.samples import Sample
from .training_data import TrainItem

FORMAT = "ltx23-latent-cache/1"
MANIFEST = "manifest.json"
KINDS = ("media", "audio", "text")

_HEADER_BYTES = 1 << 16
"""Room allowed for a safetensors header (names, shapes, metadata) in the free-space check."""

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def key_hash(*parts: object) -> str:
    return hashlib.sha256(json.dumps([FORMAT, *parts], sort_keys=True, default=str).encode()).hexdigest()[:32]


def dtype_name(dtype: torch.dtype) -> str:
    for name, value in DTYPES.items():
        if value == dtype:
            return name
    raise ValueError(f"unsupported storage dtype {dtype}; use one of {sorted(DTYPES)}")


def media_key(sample: Sample, video_identity: str, storage_dtype: torch.dtype, reference: str = "") -> str:
    """``reference`` names how the sample's IC reference is made (``ReferenceSpec.key``), empty without one."""
    # The caption is blanked so that a caption edit keeps the (expensive) video latents.
    pixels = dataclasses.replace(sample, caption="").cache_key()
    if reference:
        return key_hash("media", pixels, video_identity, dtype_name(storage_dtype), reference)
    return key_hash("media", pixels, video_identity, dtype_name(storage_dtype))


def audio_key(sample: Sample, audio_identity: str, storage_dtype: torch.dtype) -> str:
    pixels = dataclasses.replace(sample, caption="").cache_key()
    return key_hash("audio", pixels, audio_identity, dtype_name(storage_dtype))


def text_key(text: str, text_identity: str, storage_dtype: torch.dtype) -> str:
    return key_hash("text", text, text_identity, dtype_name(storage_dtype))


def relpath(kind: str, key: str) -> str:
    return f"{kind}/{key}.safetensors"


def write_tensors(path: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> int:
    """Writes a safetensors file atomically; returns its size."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(path, size_hint=tensor_bytes(tensors) + _HEADER_BYTES) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return os.path.getsize(path)


def write_json(path: str, obj: object) -> None:
    write_text_atomic(path, json.dumps(obj, indent=1, sort_keys=False))


def stored_key(path: str) -> str | None:
    """The key in a cache file's header, or None when the file is missing, truncated or not ours."""
    try:
        with safe_open(path, "pt") as f:
            meta = f.metadata() or {}
    except Exception:  # noqa: BLE001 - any unreadable file is a cache miss, whatever the reader raises
        return None
    if meta.get("format") != FORMAT:
        return None
    return meta.get("key")


def header_metadata(path: str) -> dict[str, str]:
    with safe_open(path, "pt") as f:
        return f.metadata() or {}


def header_shapes(path: str) -> dict[str, list[int]]:
    with safe_open(path, "pt") as f:
        return {k: list(f.get_slice(k).get_shape()) for k in f.keys()}


def load_tensor(path: str, name: str) -> torch.Tensor:
    with safe_open(path, "pt") as f:
        return f.get_tensor(name)


def is_valid(root: str, kind: str, key: str) -> bool:
    return stored_key(os.path.join(root, relpath(kind, key))) == key


def scan_unreferenced(root: str, referenced: Iterable[str]) -> list[str]:
    """Cache files (and leftover temp files of interrupted writes) that no current sample or prompt uses."""
    keep = set(referenced)
    stale = []
    for kind in KINDS:
        folder = os.path.join(root, kind)
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            rel = f"{kind}/{name}"
            if rel not in keep and (name.endswith(".safetensors") or is_temp_file(name)):
                stale.append(rel)
    return stale


def read_manifest(root: str) -> dict | None:
    path = os.path.join(root, MANIFEST)
    try:
        with open(path) as f:
            manifest = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"latent cache manifest {path} is unreadable ({exc}); delete it and re-run Latent Precompute "
                         "(valid latent files are reused)") from exc
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path} has format {manifest.get('format')!r}, this pack reads {FORMAT!r}; re-run Latent "
                         "Precompute into a new folder")
    return manifest


@dataclasses.dataclass(frozen=True)
class LatentCacheHandle:
    """What flows between nodes as ``LTX23_LATENT_CACHE``: a path and a summary, never tensors."""

    path: str
    fingerprint: str
    num_samples: int
    buckets: dict[str, int]
    """Pixel bucket ``"768x512x49"`` (width x height x frames) -> number of samples."""
    context_shape: tuple[int, ...]
    has_audio: bool
    has_reference: bool
    validation_prompts: tuple[str, ...]
    bytes_on_disk: int
    storage_dtype: str
    dataset_fingerprint: str = ""
    """The Dataset Loader's fingerprint of the files the samples came from, when the caller knows it."""

    def open(self, dtype: torch.dtype | None = None) -> "LatentCache":
        cache = LatentCache(self.path, dtype=dtype)
        if cache.fingerprint() != self.fingerprint:
            raise ValueError(f"the latent cache at {self.path} changed since this handle was made; re-run Latent "
                             "Precompute (or re-queue the workflow) so the trainer sees the current cache")
        return cache


class LatentCache:
    """``TrainingData`` over a finished cache folder.

    Tensors come back in the storage dtype unless ``dtype`` is given. Text contexts are shared between samples,
    so the most recent ones are kept in a small LRU.
    """

    def __init__(self, root: str, dtype: torch.dtype | None = None, text_lru: int = 8):
        self.root = os.path.abspath(root)
        manifest = read_manifest(self.root)
        if manifest is None:
            raise FileNotFoundError(f"no latent cache at {self.root} ({MANIFEST} missing); run Latent Precompute "
                                    "with this folder first")
        if not manifest.get("complete"):
            raise ValueError(f"the latent cache at {self.root} is incomplete (its last run was interrupted); re-run "
                             "Latent Precompute on it to finish (finished samples are reused)")
        self.manifest = manifest
        self.entries: list[dict] = manifest["entries"]
        self.excluded: dict[str, str] = {}
        """Samples ``integrity.verify_cache`` left out, with why."""
        self.dtype = dtype
        self._text_lru = text_lru
        self._texts: OrderedDict[str, torch.Tensor] = OrderedDict()

    def __len__(self) -> int:
        return len(self.entries)

    def _load(self, rel: str) -> dict[str, torch.Tensor]:
        path = os.path.join(self.root, rel)
        try:
            tensors = load_file(path)
        except FileNotFoundError:
            raise FileNotFoundError(f"latent cache file {path} is missing; re-run Latent Precompute on {self.root} "
                                    "to recompute it") from None
        except Exception as exc:  # noqa: BLE001 - safetensors' own errors name no file
            raise ValueError(f"latent cache file {path} cannot be read ({type(exc).__name__}: {exc}); it is "
                             f"truncated or damaged. Re-run Latent Precompute on {self.root} to recompute it") from None
        if self.dtype is not None:
            tensors = {k: v.to(self.dtype) for k, v in tensors.items()}
        return tensors

    def _context(self, rel: str) -> torch.Tensor:
        if rel in self._texts:
            self._texts.move_to_end(rel)
            return self._texts[rel]
        context = self._load(rel)["context"]
        self._texts[rel] = context
        if len(self._texts) > self._text_lru:
            self._texts.popitem(last=False)
        return context

    def item(self, index: int) -> TrainItem:
        entry = self.entries[index]
        media = self._load(entry["media"])
        audio = None
        if entry.get("audio"):
            audio = self._load(entry["audio"]).get("audio_latents")
        return TrainItem(sample_id=entry["sample_id"], video_latents=media["video_latents"],
                         context=self._context(entry["text"]), fps=float(entry["fps"]), audio_latents=audio,
                         reference_latents=media.get("reference_latents"))

    def group_key(self, index: int) -> tuple:
        # Same layout as ``TrainItem.group_key``, from the manifest alone.
        e = self.entries[index]
        shapes = [None if e.get(k) is None else tuple(e[k])
                  for k in ("video_shape", "context_shape", "audio_shape", "reference_shape")]
        return (*shapes, float(e["fps"]))

    def empty_context(self) -> torch.Tensor:
        return self._context(self.manifest["empty_text"])

    def caption(self, index: int) -> str:
        """The caption (trigger included) the sample's context was encoded from."""
        return self.entries[index].get("caption", "")

    @property
    def validation_prompts(self) -> list[str]:
        return list(self.manifest["prompts"])

    def prompt_context(self, prompt: str) -> torch.Tensor:
        """Processed context of a validation prompt given to Latent Precompute."""
        try:
            rel = self.manifest["prompts"][prompt]
        except KeyError:
            raise KeyError(f"prompt {prompt!r} was not precomputed in {self.root}; add it to Latent Precompute's "
                           "validation prompts and re-run it (only the new prompt is encoded)") from None
        return self._context(rel)

    def notes(self) -> list[str]:
        """What Latent Precompute reported about this cache (captions cut, samples left out), for the trainer's
        report."""
        lines = [f"precompute warning: {w}" for w in self.manifest.get("warnings", [])]
        return lines + [f"left out by precompute: {f['sample_id']} ({f['path']}): {f['stage']} failed: {f['reason']}"
                        for f in self.manifest.get("failed", [])]

    def fingerprint(self) -> str:
        if self.excluded:
            return key_hash(self.manifest["fingerprint"], sorted(self.excluded))
        return self.manifest["fingerprint"]

    def bytes_on_disk(self) -> int:
        files = {e[k] for e in self.entries for k in ("media", "audio", "text") if e.get(k)}
        files.add(self.manifest["empty_text"])
        files.update(self.manifest["prompts"].values())
        return sum(os.path.getsize(os.path.join(self.root, f)) for f in files)

    def handle(self) -> LatentCacheHandle:
        buckets: dict[str, int] = {}
        for e in self.entries:
            name = e.get("bucket") or "x".join(str(d) for d in e["video_shape"])
            buckets[name] = buckets.get(name, 0) + 1
        return LatentCacheHandle(
            path=self.root, fingerprint=self.fingerprint(), num_samples=len(self),
            buckets=buckets, context_shape=tuple(self.manifest["context_shape"]),
            has_audio=any(e.get("audio_shape") for e in self.entries),
            has_reference=any(e.get("reference_shape") for e in self.entries),
            validation_prompts=tuple(self.manifest["prompts"]), bytes_on_disk=self.bytes_on_disk(),
            storage_dtype=self.manifest["storage_dtype"])
