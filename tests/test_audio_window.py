"""A window's audio covers exactly the time span of its frames: shown with a clip whose tone changes at a known
time, cut at an offset."""

import dataclasses

import numpy as np
import pytest

from media_factory import write_clip
from trainer_core.cache.precompute import load_sample_audio
from trainer_core.data.samples import Sample
from trainer_core.data.media import media_identity

SWITCH_S = 1.0  # 440 Hz before, 1760 Hz after


def _pitch(wave: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.fft.rfftfreq(len(wave), 1 / rate)[spectrum.argmax()])


def _switch_time(wave: np.ndarray, rate: int) -> float:
    """Seconds into ``wave`` where the 1760 Hz tone takes over (10 ms resolution)."""
    hop = rate // 100
    for k in range(0, len(wave) - 2 * hop, hop):
        if _pitch(wave[k:k + 2 * hop], rate) > 1100:
            return (k + hop) / rate
    return float("inf")


@pytest.mark.parametrize("start", [0.0, 0.25, 0.5, 0.75])
def test_window_audio_is_cut_to_the_frames_time_span(tmp_path, start):
    clip = write_clip(tmp_path / "tone.mp4", width=32, height=32, frames=72, fps=24, audio=True,
                      tones=[(SWITCH_S, 1760.0)])
    frames = 41
    s = Sample(sample_id=f"tone.mp4#{start}", media_path=str(clip), media_identity=media_identity(clip),
               kind="video", caption="a tone", width=32, height=32, frames=frames, fps=24.0, start_time=start)
    wave, rate = load_sample_audio(s)
    left = wave[0].numpy()
    assert len(left) == round(frames / 24 * rate)
    assert abs(_pitch(left[: int(0.2 * rate)], rate) - 440) < 30
    assert abs(_pitch(left[-int(0.2 * rate):], rate) - 1760) < 30
    # The change lands where the window's clock says it does (AAC framing allows a few ms).
    assert abs(_switch_time(left, rate) - (SWITCH_S - start)) <= 0.02


def test_a_window_past_the_track_end_is_padded_with_silence(tmp_path):
    clip = write_clip(tmp_path / "short.mp4", width=32, height=32, frames=24, fps=24, audio=True)
    s = Sample(sample_id="short.mp4#late", media_path=str(clip), media_identity=media_identity(clip),
               kind="video", caption="a tone", width=32, height=32, frames=17, fps=24.0, start_time=0.5)
    wave, rate = load_sample_audio(dataclasses.replace(s))
    assert wave.shape[1] == round(17 / 24 * rate)
    tail = wave[:, int(0.55 * rate):]
    assert float(tail.abs().max()) < 1e-3
