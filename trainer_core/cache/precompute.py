"""Latent Precompute: encode every sample once into the on-disk cache (``latent_cache``), resumably.

The run is phase by phase (text, then video, then audio) so that only one large model is needed at a time; each
finished file is written atomically at once, so an interrupted run loses at most the batch in flight. A clip that
fails to decode or encode is reported and left out (``phases``, ``isolation``); every caption is fitted to one
context length (``context_window``); each file's sha256 goes into the manifest (``integrity``). Callers
(the ComfyUI node, the headless demo, tests) inject the encoders, the frame loader, a progress callback and a
cancel check; nothing here knows about ComfyUI.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable, Sequence

import torch

from . import integrity, isolation, phases
from . import latent_cache as lc
from .encoders import AudioEncoder, TextConditioner, VideoDecoder, VideoEncoder, check_bucket
from .references import ReferenceSpec
from .isolation import SampleFailure
from .loaders import load_frames, load_reference_frames, load_sample_audio
from ..data.samples import Sample

FrameLoader = Callable[[Sample], torch.Tensor]
"""Sample -> float32 ``[F, H, W, 3]`` in 0..1 at the sample's bucket size."""
AudioLoader = Callable[[Sample], "tuple[torch.Tensor, int] | None"]
"""Sample -> (``[C, S]`` waveform of the sample's window, sample rate), or None when the source has no audio."""
ProgressFn = Callable[[int, int, str], None]
"""(units done, units total, what is happening); a unit is one text, one clip or one audio track."""
CancelFn = Callable[[], None]
"""Raises to stop the run; called between batches."""
PhaseDoneFn = Callable[[str], None]
"""Called with "text", "video", "audio" when a phase ends, so the caller can free that phase's models early."""


@dataclasses.dataclass
class PrecomputeReport:
    cache: lc.LatentCacheHandle
    reused: dict[str, int]
    """Files found valid in the cache, per kind ("text", "media", "audio")."""
    computed: dict[str, int]
    changed: list[str]
    """Samples whose cached data changed since the folder's previous run (new caption, VAE, window, ...)."""
    added: list[str]
    removed: list[str]
    """Samples of the previous run that are no longer in the input."""
    stale_files: list[str]
    stale_bytes: int
    pruned: bool
    no_audio: list[str]
    """Samples without an audio track in an audio-enabled run (they train video-only)."""
    seconds: dict[str, float]
    frames_encoded: int
    failed: list[SampleFailure] = dataclasses.field(default_factory=list)
    """Samples that could not be decoded or encoded: left out of the cache (audio: trained video-only)."""
    truncated: list[str] = dataclasses.field(default_factory=list)
    """One line per caption cut to the text encoder's window."""
    repaired: list[str] = dataclasses.field(default_factory=list)
    """Cache files whose content no longer matched their recorded hash, so they were computed again."""

    def summary(self) -> str:
        c = self.cache
        per_sample = c.bytes_on_disk / max(1, c.num_samples)
        lines = [
            f"Latent cache: {c.path}",
            f"{c.num_samples} samples, {_mb(c.bytes_on_disk)} on disk ({_mb(per_sample)} per sample, "
            f"{c.storage_dtype}); context {list(c.context_shape)}",
            "buckets: " + ", ".join(f"{k} x{v}" for k, v in sorted(c.buckets.items())),
            "encoded: " + ", ".join(f"{k} {self.computed[k]}" for k in self.computed)
            + "; reused: " + ", ".join(f"{k} {self.reused[k]}" for k in self.reused),
        ]
        if self.frames_encoded:
            t = self.seconds.get("video", 0.0)
            lines.append(f"video: {self.frames_encoded} frames in {t:.1f} s ({self.frames_encoded / max(t, 1e-9):.1f} "
                         "frames/s)")
        if self.added or self.changed or self.removed:
            lines.append(f"since last run: {len(self.added)} new, {len(self.changed)} changed, "
                         f"{len(self.removed)} removed")
        if self.changed:
            lines.append("changed: " + _ids(self.changed))
        if self.stale_files:
            verb = "deleted" if self.pruned else "kept (enable prune_stale to delete them)"
            lines.append(f"stale: {len(self.stale_files)} files no sample uses, {_mb(self.stale_bytes)}, {verb}")
        if self.no_audio:
            lines.append(f"no audio track (video-only training): {_ids(self.no_audio)}")
        if c.validation_prompts:
            lines.append(f"validation prompts: {len(c.validation_prompts)}")
        if self.repaired:
            lines.append(f"repaired: {len(self.repaired)} cache file(s) were damaged on disk and were encoded again: "
                         + _ids(self.repaired))
        lines += [f"WARNING: {line}" for line in self.truncated]
        lines += isolation.summary_lines(self.failed, c.num_samples)
        return "\n".join(lines)


def _mb(n: float) -> str:
    return f"{n / 1e6:.2f} MB"


def _ids(ids: Sequence[str], limit: int = 8) -> str:
    more = f" (+{len(ids) - limit} more)" if len(ids) > limit else ""
    return ", ".join(ids[:limit]) + more


def _check_samples(samples: Sequence[Sample]) -> None:
    seen = set()
    for s in samples:
        if s.sample_id in seen:
            raise ValueError(f"sample id {s.sample_id!r} appears twice; every sample (clip window) needs its own id")
        seen.add(s.sample_id)
        check_bucket(s.width, s.height, s.frames, f"sample {s.sample_id!r}")


def precompute(
    samples: Sequence[Sample],
    cache_dir: str,
    *,
    video_encoder: VideoEncoder,
    text_conditioner: TextConditioner,
    audio_encoder: AudioEncoder | None = None,
    validation_prompts: Sequence[str] = (),
    frame_loader: FrameLoader = load_frames,
    reference_loader: FrameLoader = load_reference_frames,
    audio_loader: AudioLoader = load_sample_audio,
    reference: ReferenceSpec = ReferenceSpec(),
    batch_size: int = 1,
    text_batch_size: int = 16,
    storage_dtype: torch.dtype = torch.bfloat16,
    prune_stale: bool = False,
    on_progress: ProgressFn | None = None,
    check_cancel: CancelFn | None = None,
    on_phase_done: PhaseDoneFn | None = None,
) -> PrecomputeReport:
    """Brings ``cache_dir`` up to date with ``samples`` and returns what it did.

    Valid files are reused, missing or changed ones computed; files no sample uses are reported (and deleted with
    ``prune_stale``). ``batch_size`` bounds how many clips of one bucket are decoded and encoded together;
    ``text_batch_size`` how many texts go to the conditioner per call. Audio is encoded when ``audio_encoder`` is
    given. IC-LoRA reference latents are stored with a sample's video latents as ``reference`` says (the
    dataset's pairs by default). Open the result with ``LatentCache(cache_dir)`` or ``report.cache.open()``.
    """
    if batch_size < 1 or text_batch_size < 1:
        raise ValueError("batch_size and text_batch_size must be at least 1")
    if not samples:
        raise ValueError("no samples to precompute; check the dataset node upstream")
    _check_samples(samples)
    root = os.path.abspath(cache_dir)
    dt = storage_dtype
    dname = lc.dtype_name(dt)
    progress = on_progress or (lambda done, total, msg: None)
    cancel = check_cancel or (lambda: None)
    phase_done = on_phase_done or (lambda phase: None)

    try:
        previous = lc.read_manifest(root)
    except ValueError:
        previous = None  # unreadable or foreign manifest: every file is re-validated by its header anyway
    old_keys = {e["sample_id"]: e["entry_key"] for e in (previous or {}).get("entries", [])}
    recorded = (previous or {}).get("files", {})

    prompts = list(dict.fromkeys(p for p in validation_prompts if p.strip()))
    texts = list(dict.fromkeys([s.caption for s in samples] + [""] + prompts))
    tkeys = {t: lc.text_key(t, text_conditioner.identity, dt) for t in texts}
    mkeys = {s.sample_id: lc.media_key(s, video_encoder.identity, dt, reference.key() if reference.applies(s) else "")
             for s in samples}
    akeys = {s.sample_id: lc.audio_key(s, audio_encoder.identity, dt) for s in samples} if audio_encoder else {}

    def entry_key(s: Sample) -> str:
        return lc.key_hash(mkeys[s.sample_id], akeys.get(s.sample_id), tkeys[s.caption])

    base_manifest = {
        "format": lc.FORMAT,
        "complete": False,
        "storage_dtype": dname,
        "video_encoder": video_encoder.identity,
        "text_conditioner": text_conditioner.identity,
        "audio_encoder": audio_encoder.identity if audio_encoder else None,
        "sample_ids": [s.sample_id for s in samples],
    }
    # Written first so that a reader never takes a half-updated folder for the previous, finished cache.
    lc.write_json(os.path.join(root, lc.MANIFEST), base_manifest)

    corrupt: list[str] = []
    verified: set[str] = set()

    def valid(kind: str, key: str) -> bool:
        # Header key first (cheap), then the content hash the previous run recorded: a file damaged in place keeps
        # its header but not its hash.
        rel = lc.relpath(kind, key)
        if not lc.is_valid(root, kind, key):
            return False
        if rel not in recorded:
            return True
        if integrity.problem(root, rel, recorded[rel]) is None:
            verified.add(rel)
            return True
        corrupt.append(rel)
        return False

    todo_text = [t for t in texts if not valid("text", tkeys[t])]
    if "" not in todo_text:
        # Contexts cached before every text was fitted to one window are re-encoded.
        window = lc.header_shapes(os.path.join(root, lc.relpath("text", tkeys[""])))["context"][0]
        todo_text += [t for t in texts if t not in todo_text and
                      lc.header_shapes(os.path.join(root, lc.relpath("text", tkeys[t])))["context"][0] != window]
    todo_media = [s for s in samples if not valid("media", mkeys[s.sample_id])]
    todo_audio = [s for s in samples if audio_encoder and not valid("audio", akeys[s.sample_id])]
    total = len(todo_text) + len(todo_media) + len(todo_audio)
    done = 0
    seconds = {"text": 0.0, "video": 0.0, "audio": 0.0}
    progress(0, total, "checking cache")

    def step(units: int, message: str) -> None:
        nonlocal done
        done += units
        progress(done, total, message)

    t0 = time.perf_counter()
    phases.encode_texts(root, todo_text, tkeys, text_conditioner, dt, text_batch_size, step, cancel)
    seconds["text"] = time.perf_counter() - t0
    phase_done("text")

    t0 = time.perf_counter()
    failures, frames_encoded = phases.encode_videos(root, todo_media, mkeys, video_encoder, frame_loader,
                                                    reference_loader, reference, dt, batch_size, step, cancel)
    seconds["video"] = time.perf_counter() - t0
    phase_done("video")

    failed_ids = {f.sample_id for f in failures}
    t0 = time.perf_counter()
    failures += phases.encode_audio(root, [s for s in todo_audio if s.sample_id not in failed_ids], akeys,
                                    audio_encoder, audio_loader, dt, step, cancel)
    seconds["audio"] = time.perf_counter() - t0
    phase_done("audio")

    encoded = [s for s in samples if s.sample_id not in failed_ids]
    if not encoded:
        raise ValueError("no sample could be encoded, so there is nothing to train on:\n"
                         + "\n".join(f"  - {f.line()}" for f in failures))
    no_audio = set()
    entries, referenced = [], set()
    for s in encoded:
        mrel, trel = lc.relpath("media", mkeys[s.sample_id]), lc.relpath("text", tkeys[s.caption])
        arel = lc.relpath("audio", akeys[s.sample_id]) if audio_encoder else None
        shapes = lc.header_shapes(os.path.join(root, mrel))
        ashapes = lc.header_shapes(os.path.join(root, arel)) if arel and os.path.exists(os.path.join(root, arel)) \
            else {}
        if arel and "audio_latents" not in ashapes:
            no_audio.add(s.sample_id)
        referenced.update(r for r in (mrel, trel, arel) if r and os.path.exists(os.path.join(root, r)))
        entries.append({
            "sample_id": s.sample_id, "entry_key": entry_key(s), "kind": s.kind, "bucket": s.bucket,
            "fps": s.fps, "caption": s.caption, "media": mrel, "text": trel,
            "audio": arel if arel and "audio_latents" in ashapes else None,
            "video_shape": shapes["video_latents"], "reference_shape": shapes.get("reference_latents"),
            "audio_shape": ashapes.get("audio_latents"),
            "context_shape": lc.header_shapes(os.path.join(root, trel))["context"],
        })
    prompt_files = {p: lc.relpath("text", tkeys[p]) for p in prompts}
    empty_rel = lc.relpath("text", tkeys[""])
    referenced.update(prompt_files.values())
    referenced.add(empty_rel)
    context_shape = lc.header_shapes(os.path.join(root, empty_rel))["context"]
    users: dict[str, list[str]] = {}
    for s in encoded:
        users.setdefault(s.caption, []).append(s.sample_id)
    truncated = [t.line(users.get(text, [])) for text, t in phases.truncations(root, texts, tkeys).items()]
    fingerprint = lc.key_hash([e["entry_key"] for e in entries], [e["sample_id"] for e in entries],
                              tkeys[""], sorted(tkeys[p] for p in prompts))
    manifest = {**base_manifest, "complete": True, "fingerprint": fingerprint, "context_shape": context_shape,
                "empty_text": empty_rel, "prompts": prompt_files, "entries": entries,
                "files": integrity.digests(root, sorted(referenced), recorded, verified),
                "failed": [f.to_json() for f in failures], "warnings": truncated}
    manifest.pop("sample_ids")
    lc.write_json(os.path.join(root, lc.MANIFEST), manifest)

    stale = lc.scan_unreferenced(root, referenced)
    stale_bytes = sum(os.path.getsize(os.path.join(root, f)) for f in stale)
    if prune_stale:
        for f in stale:
            os.unlink(os.path.join(root, f))

    new_keys = {s.sample_id: entry_key(s) for s in encoded}
    computed = {"text": len(todo_text), "media": len(todo_media)}
    reused = {"text": len(texts) - len(todo_text), "media": len(samples) - len(todo_media)}
    if audio_encoder:
        computed["audio"], reused["audio"] = len(todo_audio), len(samples) - len(todo_audio)
    return PrecomputeReport(
        cache=lc.LatentCache(root).handle(),
        reused=reused, computed=computed,
        changed=[i for i, k in new_keys.items() if i in old_keys and old_keys[i] != k],
        added=[i for i in new_keys if previous is not None and i not in old_keys],
        removed=[i for i in old_keys if i not in new_keys],
        stale_files=stale, stale_bytes=stale_bytes, pruned=prune_stale,
        no_audio=sorted(no_audio), seconds=seconds, frames_encoded=frames_encoded,
        failed=failures, truncated=truncated, repaired=corrupt,
    )


def decode_check(cache: lc.LatentCache, decoder: VideoDecoder, count: int) -> list[tuple[str, torch.Tensor, float]]:
    """Decodes up to ``count`` cached latents, spread over the dataset, back to ``(sample_id, [F,H,W,3], fps)``:
    what the model will actually learn from (crop, window, VAE losses)."""
    n = len(cache)
    if count <= 0 or n == 0:
        return []
    count = min(count, n)
    picks = sorted({round(i * (n - 1) / max(1, count - 1)) for i in range(count)})
    out = []
    for i in picks:
        item = cache.item(i)
        frames = decoder.decode(item.video_latents[None].float())[0]
        out.append((item.sample_id, frames, item.fps))
    return out
