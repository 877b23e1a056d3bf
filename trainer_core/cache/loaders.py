"""The default loaders Latent Precompute reads samples with: frames, reference frames and audio of one window."""

from __future__ import annotations

import torch

from ..data.samples import Sample


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
