"""Latent Precompute: encode every sample once into the on-disk cache (``latent_cache``), resumably.

The run is phase by phase (text, then video, then audio) so that only one large model is needed at a time; each
finished file is written atomically at once, so an interrupted run loses at most the batch in flight. Callers
(the ComfyUI node, the headless demo, tests) inject the encoders, the frame loader, a progress callback and a
cancel check; nothing here knows about ComfyUI.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import Callable, Sequence

import torch
from safetensors import safe_open

from . import latent_cache as lc
from .encoders import AudioEncoder, TextConditioner, VideoDecoder, VideoEncoder, check_bucket
from .references import ReferenceSpec
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


def load_frames(sample: Sample) -> torch.Tensor:
    from ..data.media import load_sample_frames

    return load_sample_frames(sample)


def load_reference_frames(sample: Sample) -> torch.Tensor:
    from ..data.media import load_reference_frames as load

    return load(sample)


def load_sample_audio(sample: Sample) -> tuple[torch.Tensor, int] | None:
    """The stereo waveform of the sample's window at the source's sample rate; None without an audio track.

    Short tracks are zero-padded to the window so audio and video latents always cover the same time span.
    """
    import av
    import numpy as np

    if sample.kind != "video":
        return None
    duration = sample.frames / sample.fps
    with av.open(sample.media_path) as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        # Seek a second early: container seeks land on the packet before the target, never after.
        container.seek(int(max(0.0, sample.start_time - 1.0) * av.time_base))
        resampler = av.AudioResampler(format="fltp", layout="stereo", rate=rate)
        chunks, first_time, total = [], None, 0
        needed = None
        for frame in container.decode(stream):
            if first_time is None:
                first_time = float(frame.time or 0.0)
                needed = int(round((sample.start_time - first_time + duration) * rate))
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray())
                total += chunks[-1].shape[1]
            if total >= needed:
                break
    if first_time is None:
        return None
    wave = torch.from_numpy(np.concatenate(chunks, axis=1)) if chunks else torch.zeros(2, 0)
    offset = max(0, int(round((sample.start_time - first_time) * rate)))
    length = int(round(duration * rate))
    wave = wave[:, offset:offset + length]
    if wave.shape[1] < length:
        wave = torch.nn.functional.pad(wave, (0, length - wave.shape[1]))
    return wave.float(), rate


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
        return "\n".join(lines)


def _mb(n: float) -> str:
    return f"{n / 1e6:.2f} MB"


def _ids(ids: Sequence[str], limit: int = 8) -> str:
    more = f" (+{len(ids) - limit} more)" if len(ids) > limit else ""
    return ", ".join(ids[:limit]) + more


def _header_shapes(path: str) -> dict[str, list[int]]:
    with safe_open(path, "pt") as f:
        return {k: list(f.get_slice(k).get_shape()) for k in f.keys()}


def expected_latent_shape(sample: Sample) -> list[int]:
    return [128, (sample.frames - 1) // 8 + 1, sample.height // 32, sample.width // 32]


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

    todo_text = [t for t in texts if not lc.is_valid(root, "text", tkeys[t])]
    todo_media = [s for s in samples if not lc.is_valid(root, "media", mkeys[s.sample_id])]
    todo_audio = [s for s in samples if audio_encoder and not lc.is_valid(root, "audio", akeys[s.sample_id])]
    total = len(todo_text) + len(todo_media) + len(todo_audio)
    done = 0
    seconds = {"text": 0.0, "video": 0.0, "audio": 0.0}
    progress(0, total, "checking cache")

    t0 = time.perf_counter()
    for i in range(0, len(todo_text), text_batch_size):
        cancel()
        batch = todo_text[i:i + text_batch_size]
        contexts = text_conditioner.encode(batch)
        if len(contexts) != len(batch):
            raise RuntimeError(f"text conditioner returned {len(contexts)} contexts for {len(batch)} texts")
        for text, context in zip(batch, contexts):
            if context.ndim != 2:
                raise RuntimeError(f"text conditioner returned shape {tuple(context.shape)} for {text[:60]!r}; "
                                   "expected a processed context [L, D_video + D_audio]")
            lc.write_tensors(os.path.join(root, lc.relpath("text", tkeys[text])), {"context": context.to(dt)},
                             {"format": lc.FORMAT, "key": tkeys[text], "kind": "text", "text": text,
                              "identity": text_conditioner.identity})
        done += len(batch)
        progress(done, total, f"text {done}/{len(todo_text)}")
    seconds["text"] = time.perf_counter() - t0
    phase_done("text")

    t0 = time.perf_counter()
    frames_encoded = 0
    by_bucket: dict[tuple, list[Sample]] = {}
    for s in todo_media:
        if reference.applies(s):
            reference.size(s)  # a factor that does not fit the bucket fails before anything is encoded
        by_bucket.setdefault((s.bucket, reference.applies(s)), []).append(s)
    for group in by_bucket.values():
        for i in range(0, len(group), batch_size):
            cancel()
            batch = group[i:i + batch_size]
            pixels = [_loaded(frame_loader, s, "frames") for s in batch]
            video = video_encoder.encode(torch.stack(pixels))
            refs = None
            if reference.applies(batch[0]):
                loader = functools.partial(_loaded, reference_loader, what="reference frames")
                refs = video_encoder.encode(torch.stack([reference.frames(s, p, loader)
                                                         for s, p in zip(batch, pixels)]))
            for j, s in enumerate(batch):
                if list(video[j].shape) != expected_latent_shape(s):
                    raise RuntimeError(f"the video encoder returned {list(video[j].shape)} for {s.sample_id!r} "
                                       f"({s.bucket}); expected {expected_latent_shape(s)}. Is the VAE an LTX-2 VAE?")
                tensors = {"video_latents": video[j].to(dt)}
                if refs is not None:
                    tensors["reference_latents"] = refs[j].to(dt)
                key = mkeys[s.sample_id]
                lc.write_tensors(os.path.join(root, lc.relpath("media", key)), tensors,
                                 {"format": lc.FORMAT, "key": key, "kind": "media", "sample_id": s.sample_id,
                                  "identity": video_encoder.identity})
                frames_encoded += s.frames * (2 if refs is not None else 1)
            done += len(batch)
            progress(done, total, f"video {batch[-1].sample_id}")
    seconds["video"] = time.perf_counter() - t0
    phase_done("video")

    t0 = time.perf_counter()
    no_audio = set()
    for s in todo_audio:
        cancel()
        key = akeys[s.sample_id]
        meta = {"format": lc.FORMAT, "key": key, "kind": "audio", "sample_id": s.sample_id,
                "identity": audio_encoder.identity}
        loaded = audio_loader(s)
        tensors = {}
        if loaded is not None:
            tensors["audio_latents"] = audio_encoder.encode(*loaded).to(dt)
        lc.write_tensors(os.path.join(root, lc.relpath("audio", key)), tensors, meta)
        done += 1
        progress(done, total, f"audio {s.sample_id}")
    seconds["audio"] = time.perf_counter() - t0
    phase_done("audio")

    entries, referenced = [], set()
    for s in samples:
        mrel, trel = lc.relpath("media", mkeys[s.sample_id]), lc.relpath("text", tkeys[s.caption])
        arel = lc.relpath("audio", akeys[s.sample_id]) if audio_encoder else None
        shapes = _header_shapes(os.path.join(root, mrel))
        ashapes = _header_shapes(os.path.join(root, arel)) if arel else {}
        if arel and "audio_latents" not in ashapes:
            no_audio.add(s.sample_id)
        referenced.update(r for r in (mrel, trel, arel) if r)
        entries.append({
            "sample_id": s.sample_id, "entry_key": entry_key(s), "kind": s.kind, "bucket": s.bucket,
            "fps": s.fps, "caption": s.caption, "media": mrel, "text": trel,
            "audio": arel if arel and "audio_latents" in ashapes else None,
            "video_shape": shapes["video_latents"], "reference_shape": shapes.get("reference_latents"),
            "audio_shape": ashapes.get("audio_latents"),
            "context_shape": _header_shapes(os.path.join(root, trel))["context"],
        })
    prompt_files = {p: lc.relpath("text", tkeys[p]) for p in prompts}
    empty_rel = lc.relpath("text", tkeys[""])
    referenced.update(prompt_files.values())
    referenced.add(empty_rel)
    context_shape = _header_shapes(os.path.join(root, empty_rel))["context"]
    fingerprint = lc.key_hash([e["entry_key"] for e in entries], [e["sample_id"] for e in entries],
                           tkeys[""], sorted(tkeys[p] for p in prompts))
    manifest = {**base_manifest, "complete": True, "fingerprint": fingerprint, "context_shape": context_shape,
                "empty_text": empty_rel, "prompts": prompt_files, "entries": entries}
    manifest.pop("sample_ids")
    lc.write_json(os.path.join(root, lc.MANIFEST), manifest)

    stale = lc.scan_unreferenced(root, referenced)
    stale_bytes = sum(os.path.getsize(os.path.join(root, f)) for f in stale)
    if prune_stale:
        for f in stale:
            os.unlink(os.path.join(root, f))

    new_keys = {s.sample_id: entry_key(s) for s in samples}
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
    )


def _loaded(loader: FrameLoader, sample: Sample, what: str) -> torch.Tensor:
    frames = loader(sample)
    want = (sample.frames, sample.height, sample.width, 3)
    if tuple(frames.shape) != want:
        raise ValueError(f"{what} of sample {sample.sample_id!r} ({sample.media_path}) have shape "
                         f"{tuple(frames.shape)}, expected {want}; the loader must return the sample's bucket size")
    return frames.float()


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
