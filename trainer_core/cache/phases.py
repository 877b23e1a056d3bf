"""The three encoding phases of Latent Precompute (text, video, audio). Each writes every finished file at once
(atomically) and isolates what one sample can break: a clip that fails to decode or encode becomes a
``SampleFailure`` and the phase goes on; only faults of the whole run (cancel, a wrong VAE, a full disk) stop it."""

from __future__ import annotations

import os
from typing import Callable, Sequence

import torch

from . import latent_cache as lc
from .context_window import META_KEY, Truncation, fit_context
from .isolation import SampleFailure, failure
from .references import ReferenceSpec
from ..data.samples import Sample


def expected_latent_shape(sample: Sample) -> list[int]:
    return [128, (sample.frames - 1) // 8 + 1, sample.height // 32, sample.width // 32]


def loaded(loader, sample: Sample, what: str) -> torch.Tensor:
    frames = loader(sample)
    want = (sample.frames, sample.height, sample.width, 3)
    if tuple(frames.shape) != want:
        path = sample.reference_path if what == "reference frames" else sample.media_path
        raise ValueError(f"{what} of sample {sample.sample_id!r} ({path}) have shape "
                         f"{tuple(frames.shape)}, expected {want}; the loader must return the sample's bucket size")
    return frames.float()


def encode_texts(root: str, todo: list[str], keys: dict[str, str], conditioner, dt: torch.dtype, batch_size: int,
                 step: Callable[[int, str], None], cancel) -> None:
    """Encodes ``todo`` (the empty caption first when it is there) and fits every context to the empty caption's
    length (``context_window``)."""
    empty_path = os.path.join(root, lc.relpath("text", keys[""]))
    empty = None if "" in todo else lc.load_tensor(empty_path, "context")
    todo = sorted(todo, key=lambda t: t != "")
    for i in range(0, len(todo), batch_size):
        cancel()
        batch = todo[i:i + batch_size]
        contexts = conditioner.encode(batch)
        if len(contexts) != len(batch):
            raise RuntimeError(f"text conditioner returned {len(contexts)} contexts for {len(batch)} texts")
        for text, context in zip(batch, contexts):
            if context.ndim != 2:
                raise RuntimeError(f"text conditioner returned shape {tuple(context.shape)} for {text[:60]!r}; "
                                   "expected a processed context [L, D_video + D_audio]")
            if empty is None:
                empty = context
            context, rows = fit_context(context, empty)
            meta = {"format": lc.FORMAT, "key": keys[text], "kind": "text", "text": text,
                    "identity": conditioner.identity}
            if rows is not None:
                meta[META_KEY] = str(rows)
            lc.write_tensors(os.path.join(root, lc.relpath("text", keys[text])), {"context": context.to(dt)}, meta)
        step(len(batch), f"text {i + len(batch)}/{len(todo)}")


def truncations(root: str, texts: Sequence[str], keys: dict[str, str]) -> dict[str, Truncation]:
    """Texts whose cached context was cut to the window, read back from the files so re-runs still report them."""
    found = {}
    for text in texts:
        meta = lc.header_metadata(os.path.join(root, lc.relpath("text", keys[text])))
        if META_KEY in meta:
            window = lc.header_shapes(os.path.join(root, lc.relpath("text", keys[text])))["context"][0]
            found[text] = Truncation(text, int(meta[META_KEY]), window)
    return found


def encode_videos(root: str, todo: list[Sample], keys: dict[str, str], encoder, frame_loader, reference_loader,
                  reference: ReferenceSpec, dt: torch.dtype, batch_size: int, step,
                  cancel) -> tuple[list[SampleFailure], int]:
    """Encodes clips bucket by bucket, with their IC references as ``reference`` says; returns the samples that
    failed and the frames encoded."""
    failures: list[SampleFailure] = []
    frames_encoded = 0
    by_bucket: dict[tuple, list[Sample]] = {}
    for s in todo:
        if reference.applies(s):
            reference.size(s)  # a factor that does not fit the bucket fails before anything is encoded
        by_bucket.setdefault((s.bucket, reference.applies(s)), []).append(s)
    for group in by_bucket.values():
        for i in range(0, len(group), batch_size):
            cancel()
            batch = group[i:i + batch_size]
            pixels = []
            for s in batch:
                try:
                    clip = loaded(frame_loader, s, "frames")
                except Exception as exc:  # noqa: BLE001 - any decode fault of one clip is that clip's problem
                    failures.append(failure(s, "video", exc))
                    continue
                try:
                    ref = (reference.frames(s, clip, lambda smp: loaded(reference_loader, smp, "reference frames"))
                           if reference.applies(s) else None)
                except Exception as exc:  # noqa: BLE001
                    failures.append(failure(s, "reference", exc))
                    continue
                pixels.append((s, clip, ref))
            for s, video, ref in _encode_isolated(encoder, pixels, failures):
                if list(video.shape) != expected_latent_shape(s):
                    raise RuntimeError(f"the video encoder returned {list(video.shape)} for {s.sample_id!r} "
                                       f"({s.bucket}); expected {expected_latent_shape(s)}. Is the VAE an LTX-2 VAE?")
                tensors = {"video_latents": video.to(dt)}
                if ref is not None:
                    tensors["reference_latents"] = ref.to(dt)
                key = keys[s.sample_id]
                lc.write_tensors(os.path.join(root, lc.relpath("media", key)), tensors,
                                 {"format": lc.FORMAT, "key": key, "kind": "media", "sample_id": s.sample_id,
                                  "identity": encoder.identity})
                frames_encoded += s.frames * (2 if ref is not None else 1)
            step(len(batch), f"video {batch[-1].sample_id}")
    return failures, frames_encoded


def _encode_isolated(encoder, pixels, failures):
    """Encodes the batch together; if that fails, one clip at a time so that only the clip at fault is lost."""
    if not pixels:
        return []
    try:
        return _encode(encoder, pixels)
    except Exception as exc:  # noqa: BLE001 - retried per clip below, where the error is attributed
        if len(pixels) == 1:
            failures.append(failure(pixels[0][0], "video", exc))
            return []
    out = []
    for item in pixels:
        try:
            out.extend(_encode(encoder, [item]))
        except Exception as exc:  # noqa: BLE001
            failures.append(failure(item[0], "video", exc))
    return out


def _encode(encoder, pixels):
    video = encoder.encode(torch.stack([clip for _, clip, _ in pixels]))
    refs = None
    if pixels[0][2] is not None:
        refs = encoder.encode(torch.stack([ref for _, _, ref in pixels]))
    return [(s, video[j], None if refs is None else refs[j]) for j, (s, _, _) in enumerate(pixels)]


def encode_audio(root: str, todo: list[Sample], keys: dict[str, str], encoder, audio_loader, dt: torch.dtype,
                 step, cancel) -> list[SampleFailure]:
    """Encodes each clip's sound; a track that fails is reported and the clip trains video-only."""
    failures = []
    for s in todo:
        cancel()
        key = keys[s.sample_id]
        meta = {"format": lc.FORMAT, "key": key, "kind": "audio", "sample_id": s.sample_id,
                "identity": encoder.identity}
        tensors = {}
        try:
            loaded_audio = audio_loader(s)
            if loaded_audio is not None:
                tensors["audio_latents"] = encoder.encode(*loaded_audio).to(dt)
        except Exception as exc:  # noqa: BLE001 - a broken sound track costs the clip its audio, not its video
            failures.append(failure(s, "audio", exc))
            step(1, f"audio {s.sample_id}")
            continue
        lc.write_tensors(os.path.join(root, lc.relpath("audio", key)), tensors, meta)
        step(1, f"audio {s.sample_id}")
    return failures
