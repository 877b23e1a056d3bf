"""Latent Precompute core on the tiny diffusers LTX-2 VAE and the stand-in text conditioner: what is encoded,
what is reused, what is reported stale, and how an interrupted run resumes."""

from __future__ import annotations

import dataclasses
import hashlib
import os

import pytest
import torch

from trainer_core.cache import latent_cache as lc
from trainer_core.cache.encoders import DiffusersVideoEncoder, StandInTextConditioner, build_tiny_vae
from trainer_core.cache.precompute import decode_check, load_sample_audio, precompute
from trainer_core.data.samples import Sample
from trainer_core.cache.training_data import TrainingData

from media_factory import write_clip


class Cancelled(Exception):
    pass


class CountingEncoder(DiffusersVideoEncoder):
    def __init__(self, vae, **kw):
        super().__init__(vae, **kw)
        self.clips = 0

    def encode(self, frames):
        self.clips += frames.shape[0]
        return super().encode(frames)


class FakeAudio:
    """A stand-in audio VAE: 25 latent steps per second, values from the waveform so content matters."""

    identity = "fake-audio:1"

    def encode(self, waveform, sample_rate):
        steps = max(1, round(waveform.shape[1] / sample_rate * 25))
        return torch.full((8, steps, 16), float(waveform.mean()))


def synth_frames(sample: Sample) -> torch.Tensor:
    seed = int(hashlib.sha256(f"{sample.media_identity}{sample.start_time}".encode()).hexdigest()[:8], 16)
    return torch.rand(sample.frames, sample.height, sample.width, 3, generator=torch.Generator().manual_seed(seed))


def make_samples() -> list[Sample]:
    common = dict(kind="video", width=64, height=64, frames=9, fps=24.0)
    return [
        Sample(sample_id="a.mp4#w0", media_path="/d/a.mp4", media_identity="a", caption="tok a cat", start_time=0.0,
               **common),
        Sample(sample_id="a.mp4#w1", media_path="/d/a.mp4", media_identity="a", caption="tok a cat", start_time=1.0,
               **common),
        Sample(sample_id="b.png", media_path="/d/b.png", media_identity="b", kind="image", caption="tok a dog",
               width=96, height=64, frames=1, fps=24.0, start_time=0.0),
    ]


@pytest.fixture(scope="module")
def vae():
    return build_tiny_vae(seed=0)


@pytest.fixture
def encoders(vae):
    return CountingEncoder(vae, tiling="never"), StandInTextConditioner(width=24, length=16)


def run(samples, root, encoders, **kw):
    video, text = encoders
    kw.setdefault("frame_loader", synth_frames)
    return precompute(samples, str(root), video_encoder=video, text_conditioner=text, **kw)


def test_first_run_encodes_everything_and_reads_back(tmp_path, encoders):
    samples = make_samples()
    report = run(samples, tmp_path, encoders, validation_prompts=["a cat at night", "", "a cat at night"])
    assert report.computed == {"text": 4, "media": 3}  # two captions, the empty caption, one prompt
    assert report.reused == {"text": 0, "media": 0}
    assert not report.stale_files and not report.changed

    cache = lc.LatentCache(str(tmp_path))
    data: TrainingData = cache  # the protocol is not runtime-checkable; check its members instead
    assert all(callable(getattr(data, m)) for m in ("__len__", "item", "empty_context", "fingerprint"))
    assert len(cache) == 3
    video, text = encoders
    for i, s in enumerate(samples):
        item = cache.item(i)
        assert item.sample_id == s.sample_id and item.fps == 24.0
        assert item.video_latents.dtype == torch.bfloat16
        expected = video.encode(synth_frames(s)[None])[0].to(torch.bfloat16)
        assert torch.equal(item.video_latents, expected)
        assert torch.equal(item.context, text.encode([s.caption])[0].to(torch.bfloat16))
        assert item.audio_latents is None and item.reference_latents is None
    assert cache.item(2).video_latents.shape == (128, 1, 2, 3)
    assert [cache.group_key(i) for i in range(3)] == [cache.item(i).group_key() for i in range(3)]
    assert cache.group_key(0) == cache.group_key(1) != cache.group_key(2)
    assert torch.equal(cache.empty_context(), text.encode([""])[0].to(torch.bfloat16))
    assert cache.validation_prompts == ["a cat at night"]
    assert cache.prompt_context("a cat at night").shape == (16, 24)
    with pytest.raises(KeyError, match="validation prompts"):
        cache.prompt_context("never given")
    assert cache.item(0).context is cache.item(1).context  # shared caption: one file, one tensor in memory

    h = report.cache
    assert h.num_samples == 3 and h.buckets == {"64x64x9": 2, "96x64x1": 1}
    assert h.context_shape == (16, 24) and h.storage_dtype == "bf16"
    assert h.bytes_on_disk == sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(tmp_path)
                                  for f in fs if f.endswith(".safetensors"))
    assert h.open(dtype=torch.float32).item(0).video_latents.dtype == torch.float32
    assert "3 samples" in report.summary()


def test_rerun_reuses_every_file(tmp_path, encoders):
    first = run(make_samples(), tmp_path, encoders)
    video, text = encoders
    clips, calls = video.clips, text.calls
    second = run(make_samples(), tmp_path, encoders)
    assert second.computed == {"text": 0, "media": 0} and second.reused == {"text": 3, "media": 3}
    assert (video.clips, text.calls) == (clips, calls)
    assert second.cache.fingerprint == first.cache.fingerprint
    assert not (second.added or second.changed or second.removed or second.stale_files)


def test_caption_edit_recomputes_text_only_and_reports_stale(tmp_path, encoders):
    samples = make_samples()
    first = run(samples, tmp_path, encoders)
    samples[2] = dataclasses.replace(samples[2], caption="tok a small dog")
    report = run(samples, tmp_path, encoders)
    assert report.computed == {"text": 1, "media": 0}
    assert report.changed == ["b.png"]
    assert report.cache.fingerprint != first.cache.fingerprint
    old_text = lc.relpath("text", lc.text_key("tok a dog", encoders[1].identity, torch.bfloat16))
    assert report.stale_files == [old_text] and not report.pruned
    assert "stale: 1 files" in report.summary()
    assert os.path.exists(tmp_path / old_text)

    pruned = run(samples, tmp_path, encoders, prune_stale=True)
    assert pruned.stale_files == [old_text] and not os.path.exists(tmp_path / old_text)
    assert run(samples, tmp_path, encoders).stale_files == []


def test_new_vae_recomputes_video_and_keeps_text(tmp_path, encoders):
    run(make_samples(), tmp_path, encoders)
    other = CountingEncoder(build_tiny_vae(seed=1), tiling="never")
    report = run(make_samples(), tmp_path, (other, encoders[1]))
    assert report.computed == {"text": 0, "media": 3}
    assert report.changed == [s.sample_id for s in make_samples()]
    assert len(report.stale_files) == 3 and all(f.startswith("media/") for f in report.stale_files)


def test_removed_and_added_samples_are_reported(tmp_path, encoders):
    samples = make_samples()
    run(samples[:2], tmp_path, encoders)
    report = run(samples[1:], tmp_path, encoders)
    assert report.removed == ["a.mp4#w0"] and report.added == ["b.png"]
    assert report.computed == {"text": 1, "media": 1}
    assert report.stale_files == [lc.relpath("media", lc.media_key(samples[0], encoders[0].identity,
                                                                       torch.bfloat16))]


def test_interrupted_run_resumes_where_it_stopped(tmp_path, encoders):
    samples = make_samples()
    steps = []

    def cancel_after_first_clip():
        if len(steps) >= 3:  # progress at the start, after the text batch, after the first clip
            raise Cancelled

    with pytest.raises(Cancelled):
        run(samples, tmp_path, encoders, check_cancel=cancel_after_first_clip,
            on_progress=lambda done, total, msg: steps.append((done, total)))
    with pytest.raises(ValueError, match="interrupted"):
        lc.LatentCache(str(tmp_path))
    (tmp_path / "media" / ".tmp-torn.safetensors").write_bytes(b"torn")  # a write killed mid-way

    video, _ = encoders
    before = video.clips
    report = run(samples, tmp_path, encoders)
    assert report.computed == {"text": 0, "media": 2} and report.reused == {"text": 3, "media": 1}
    assert video.clips - before == 2
    assert report.stale_files == ["media/.tmp-torn.safetensors"]
    assert len(lc.LatentCache(str(tmp_path))) == 3


def test_torn_or_foreign_file_is_recomputed(tmp_path, encoders):
    samples = make_samples()
    run(samples, tmp_path, encoders)
    path = tmp_path / lc.relpath("media", lc.media_key(samples[0], encoders[0].identity, torch.bfloat16))
    path.write_bytes(path.read_bytes()[:100])
    report = run(samples, tmp_path, encoders)
    assert report.computed == {"text": 0, "media": 1}
    assert lc.LatentCache(str(tmp_path)).item(0).video_latents.shape == (128, 2, 2, 2)


def test_batches_group_one_bucket_and_match_single_encodes(tmp_path, encoders, vae):
    samples = make_samples()
    video, _ = encoders
    calls = []
    original = video.encode
    video.encode = lambda frames: calls.append(frames.shape[0]) or original(frames)
    run(samples, tmp_path / "batched", encoders, batch_size=4)
    assert sorted(calls) == [1, 2]  # the two 64x64x9 windows together, the image alone
    single = run(samples, tmp_path / "single", (CountingEncoder(vae, tiling="never"), encoders[1]))
    batched = lc.LatentCache(str(tmp_path / "batched"))
    for i in range(3):
        torch.testing.assert_close(batched.item(i).video_latents.float(),
                                   single.cache.open().item(i).video_latents.float(), atol=1e-2, rtol=1e-2)


def test_progress_counts_units_and_phase_hooks(tmp_path, encoders):
    seen, phases = [], []
    run(make_samples(), tmp_path, encoders, text_batch_size=2,
        on_progress=lambda done, total, msg: seen.append((done, total)), on_phase_done=phases.append)
    assert seen[0] == (0, 6) and seen[-1] == (6, 6)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert phases == ["text", "video", "audio"]


def test_audio_latents_and_clips_without_audio(tmp_path, encoders):
    samples = make_samples()
    run(samples, tmp_path, encoders)

    def audio_loader(s):
        if s.kind == "image":
            return None
        return torch.full((2, 16000 * s.frames // 24), s.start_time + 0.5), 16000

    report = run(samples, tmp_path, encoders, audio_encoder=FakeAudio(), audio_loader=audio_loader)
    assert report.computed == {"text": 0, "media": 0, "audio": 3}  # switching audio on keeps the video latents
    assert report.no_audio == ["b.png"] and "b.png" in report.summary()
    cache = lc.LatentCache(str(tmp_path))
    assert cache.item(0).audio_latents.shape == (8, 9, 16)
    assert float(cache.item(1).audio_latents[0, 0, 0]) == 1.5
    assert cache.item(2).audio_latents is None
    assert report.cache.has_audio
    again = run(samples, tmp_path, encoders, audio_encoder=FakeAudio(), audio_loader=audio_loader)
    assert again.computed["audio"] == 0 and again.no_audio == ["b.png"]


def test_reference_latents_for_ic_lora(tmp_path, encoders):
    s = dataclasses.replace(make_samples()[0], reference_path="/d/a_canny.mp4", reference_identity="ra")

    def ref_loader(sample):
        return 1 - synth_frames(sample)

    report = run([s], tmp_path, encoders, reference_loader=ref_loader)
    item = lc.LatentCache(str(tmp_path)).item(0)
    assert item.reference_latents.shape == item.video_latents.shape == (128, 2, 2, 2)
    assert not torch.equal(item.reference_latents, item.video_latents)
    assert report.cache.has_reference


def test_decode_check_returns_pixels(tmp_path, encoders):
    run(make_samples(), tmp_path, encoders)
    decoded = decode_check(lc.LatentCache(str(tmp_path)), encoders[0], 2)
    assert [d[0] for d in decoded] == ["a.mp4#w0", "b.png"]
    assert decoded[0][1].shape == (9, 64, 64, 3) and decoded[1][1].shape == (1, 64, 96, 3)
    assert 0 <= float(decoded[0][1].min()) and float(decoded[0][1].max()) <= 1


def test_bad_input_errors_name_the_sample(tmp_path, encoders):
    samples = make_samples()
    with pytest.raises(ValueError, match="appears twice"):
        run(samples + samples[:1], tmp_path, encoders)
    with pytest.raises(ValueError, match="a.mp4#w0.*not an LTX bucket"):
        run([dataclasses.replace(samples[0], frames=8)], tmp_path, encoders)
    with pytest.raises(ValueError, match="a.mp4#w0.*/d/a.mp4.*expected \\(9, 64, 64, 3\\)"):
        run(samples, tmp_path, encoders, frame_loader=lambda s: torch.rand(1, 64, 64, 3))


def test_real_media_loader_and_audio_track(tmp_path, encoders):
    from trainer_core.data.media import media_identity

    clip = write_clip(tmp_path / "clip.mp4", width=64, height=48, frames=24, fps=24, audio=True)
    s = Sample(sample_id="clip.mp4#w0", media_path=str(clip), media_identity=media_identity(clip), kind="video",
               caption="tok a tone", width=64, height=32, frames=9, fps=24.0, start_time=0.25)
    video, text = encoders
    report = precompute([s], str(tmp_path / "cache"), video_encoder=video, text_conditioner=text,
                        audio_encoder=FakeAudio())
    item = report.cache.open().item(0)
    assert item.video_latents.shape == (128, 2, 1, 2)
    assert item.audio_latents.shape == (8, 9, 16)

    wave, rate = load_sample_audio(s)
    assert rate == 44100 and wave.shape == (2, round(9 / 24 * 44100))
    assert float(wave.abs().max()) > 0.1  # the clip's 440 Hz tone, not padding
    silent = write_clip(tmp_path / "silent.mp4", width=64, height=48, frames=12, fps=24)
    assert load_sample_audio(dataclasses.replace(s, media_path=str(silent))) is None
