"""Pre-flight estimate: exact byte counts on the tiny model, the H200 calibration on the full-size architecture
(built on the meta device), the fixes a will-not-fit message names, and refinement from a measured probe."""

import statistics
import time

import pytest
import torch
from torch import nn

from tiny import tiny_data, tiny_denoiser
from trainer_core.training import estimate as est
from trainer_core.training import estimate_model as est_model
from trainer_core.training.config import recipe_config
from trainer_core.training.diffusers_denoiser import DiffusersLTX2Denoiser, ltx2_config
from trainer_core.training.lora import LoraSet, select_targets
from trainer_core.training.trainer import LoraTrainer
from trainer_core.cache.training_data import InMemoryData

GiB = 2 ** 30


def _cfg(**kw):
    base = dict(steps=4, rank=4, alpha=4, checkpoint_every=2, keep_checkpoints=1, mixed_precision="no",
                gradient_checkpointing=False, targets=("video_attn", "video_ff"))
    base.update(kw)
    return recipe_config("character", **base)


def _tiny_estimate(d, cfg, latent=(2, 2, 3), **kw):
    work = est_model.largest_workload(tiny_data(d, n=2, latent=latent), cfg.batch_size)
    return est.estimate(d, cfg, work, device="cpu", throughput=1e9, **kw)


@pytest.fixture(scope="module")
def full():
    """The full-size LTX-2.3 DiT in bf16 on the meta device: real shapes and dtypes, no memory."""
    from diffusers import LTX2VideoTransformer3DModel

    with torch.device("meta"):
        model = LTX2VideoTransformer3DModel(**ltx2_config("ltx-2.3", "full"))
    return DiffusersLTX2Denoiser(nn.Module.to(model, dtype=torch.bfloat16))


def _full_work(bucket):
    w, h, f = (int(v) for v in bucket.split("x"))
    return est_model.Workload((128, (f - 1) // 8 + 1, h // 32, w // 32), context_tokens=1024, context_width=6144)


def _full_cfg(**kw):
    return recipe_config("character", **{"rank": 32, "alpha": 32, "targets": ("video_attn",), **kw})


def test_lora_optimizer_and_weight_bytes_are_the_real_counts():
    d = tiny_denoiser()
    cfg = _cfg()
    e = _tiny_estimate(d, cfg)
    lora = LoraSet(select_targets(d.lora_targets(), cfg.targets), cfg.rank, cfg.alpha)
    params = lora.trainable_parameters()
    assert e.lora_params == sum(p.numel() for p in params)
    assert e.lora_bytes == e.vram.lora == sum(p.numel() * p.element_size() for p in params)
    for p in params:
        p.grad = torch.ones_like(p)
    opt = torch.optim.AdamW(params)
    opt.step()
    moments = [v for s in opt.state.values() for k, v in s.items() if k != "step"]
    assert e.optimizer_bytes == e.vram.optimizer == sum(t.numel() * t.element_size() for t in moments)
    assert e.vram.weights == sum(p.numel() * p.element_size() for p in d.base_parameters())


def test_activations_grow_with_tokens_and_shrink_with_checkpointing():
    d = tiny_denoiser()
    small, large = (_tiny_estimate(d, _cfg(), latent=lat).vram.activations for lat in ((2, 2, 3), (3, 8, 8)))
    assert large > 2 * small > 0
    checkpointed = _tiny_estimate(d, _cfg(gradient_checkpointing=True), latent=(3, 8, 8)).vram.activations
    assert checkpointed < large
    # bf16 autocast halves every saved element (the tiny model is fp32).
    autocast = _tiny_estimate(d, _cfg(mixed_precision="bf16"), latent=(3, 8, 8)).vram.activations
    assert autocast < 0.6 * large


def test_largest_workload_reads_shapes_without_loading_tensors():
    d = tiny_denoiser()
    data = tiny_data(d, n=1, latent=(2, 2, 3), audio_steps=5)
    big = tiny_data(d, n=1, latent=(3, 4, 5), audio_steps=7).items[0]
    mixed = InMemoryData(data.items + [big] + data.items, data.empty)
    mixed.item = None  # any tensor load would fail
    work = est_model.largest_workload(mixed, batch_size=2, train_audio=True)
    assert work.video_shape == (128, 3, 4, 5) and work.video_tokens == 60
    assert (work.context_tokens, work.context_width) == tuple(big.context.shape)
    assert work.audio_tokens == 7 and work.batch_size == 2
    assert work.bucket == "160x128x17"
    assert est_model.largest_workload(mixed).audio_tokens == 0


@pytest.mark.parametrize("bucket, checkpointing, measured_gib", [
    ("960x544x49", True, 39.6),
    ("960x544x49", False, 91.8),
    ("512x512x49", True, 38.1),
])
def test_full_size_vram_matches_the_h200_measurements(full, bucket, checkpointing, measured_gib):
    # bench/RESULTS.md: pack trainer, rank 32 on video attention, 1024 context tokens, video-only.
    e = est.estimate(full, _full_cfg(gradient_checkpointing=checkpointing), _full_work(bucket), throughput=4e14)
    assert e.vram.weights / GiB == pytest.approx(35.4, abs=0.05)
    assert e.lora_params == 100_663_296
    assert e.vram_bytes / GiB == pytest.approx(measured_gib, rel=0.15)
    # The calibration is much tighter than the requirement; a drift past 3% means the model changed.
    assert e.vram_bytes / GiB == pytest.approx(measured_gib, rel=0.03)


def test_full_size_time_matches_the_h200_measurement(full):
    e = est.estimate(full, _full_cfg(), _full_work("960x544x49"), device="cuda",
                     throughput=est_model.ACHIEVED_FRACTION * est_model.DATASHEET_BF16_FLOPS["H200"])
    assert e.flops_per_step / 1e12 == pytest.approx(305, rel=0.02)  # ltx-trainer-reference.md section 12
    assert e.sec_per_step == pytest.approx(0.923, rel=0.15)
    assert e.eta_sec == pytest.approx(e.sec_per_step * 1500)


@pytest.mark.parametrize("bucket, measured_s", [("960x544x49", 0.729), ("512x512x49", 0.4725)])
def test_compiled_block_time_matches_the_h100_measurements(full, bucket, measured_s):
    # bench/RESULTS.md, 2026-12-08: the node path with the compiled block on an H100, same workload as above.
    e = est.estimate(full, _full_cfg(), _full_work(bucket), device="cuda", compiled_blocks=True,
                     throughput=est_model.COMPILED_ACHIEVED_FRACTION * est_model.DATASHEET_BF16_FLOPS["H100"])
    assert e.sec_per_step == pytest.approx(measured_s, rel=0.10)
    eager = est.estimate(full, _full_cfg(), _full_work(bucket), device="cuda",
                         throughput=est_model.ACHIEVED_FRACTION * est_model.DATASHEET_BF16_FLOPS["H100"])
    assert e.vram_bytes == eager.vram_bytes  # measured peaks: compiled 42.4 / 41.4 GiB, eager 42.7 / 41.5 GiB


def test_will_not_fit_names_the_fixes_with_numbers(full):
    e = est.estimate(full, _full_cfg(gradient_checkpointing=False), _full_work("960x544x49"),
                     vram_available=48 * GiB, throughput=4e14)
    assert not e.fits and e.vram_bytes > 80 * GiB
    with pytest.raises(est.WillNotFit) as info:
        e.raise_if_unfit()
    msg = str(info.value)
    assert "of GPU memory at bucket 960x544x49, 48.0 GiB available" in msg
    assert f"training needs ~{e.vram_bytes / GiB:.1f} GiB" in msg
    for fix in ("turn on gradient checkpointing (~39.", "use bucket ", "lower rank to 16 (~",
                "let ComfyUI stream", "use the fp8 checkpoint (~"):
        assert fix in msg, fix
    # Biggest saving first; the ones that fit say so by not saying "still too much".
    needs = [f.vram for f in e.fixes]
    assert needs == sorted(needs)
    assert e.fixes[0].description == "turn on gradient checkpointing" and e.fixes[0].fits
    assert "lower rank to 16 (~" in msg and "still too much" in msg


def test_smaller_bucket_fix_keeps_the_aspect_and_fits(full):
    e = est.estimate(full, _full_cfg(), _full_work("1280x704x121"), vram_available=46 * GiB, throughput=4e14)
    assert not e.fits
    bucket = next(f for f in e.fixes if f.description.startswith("use bucket"))
    assert bucket.fits and bucket.vram * (1 + est_model.ALLOCATOR_SLACK) <= 46 * GiB
    w, h, f = (int(v) for v in bucket.description.split()[-1].split("x"))
    assert f == 121 and w % 32 == 0 and h % 32 == 0 and w < 1280
    assert w / h == pytest.approx(1280 / 704, rel=0.1)


def test_fixes_for_a_small_gpu_offload_and_fp8(full):
    e = est.estimate(full, _full_cfg(), _full_work("960x544x49"), vram_available=24 * GiB, throughput=4e14)
    stream = next(f for f in e.fixes if f.description.startswith("let ComfyUI stream"))
    assert stream.fits and stream.vram * (1 + est_model.ALLOCATOR_SLACK) <= 24 * GiB
    fp8 = next(f for f in e.fixes if f.description == "use the fp8 checkpoint")
    # The blocks' linear weights drop to one byte; norms, embeddings and tables stay bf16.
    saving = sum(m.weight.numel() for m in full.lora_targets().values())
    assert e.vram_bytes - fp8.vram == saving
    # The bf16 weights alone exceed 24 GiB: no bucket helps, fp8 does.
    assert fp8.fits and not any(f.description.startswith("use bucket") for f in e.fixes)


def test_disk_estimate_matches_a_real_checkpoint(tmp_path):
    d = tiny_denoiser()
    cfg = _cfg(steps=4, checkpoint_every=2, keep_checkpoints=1)
    data = tiny_data(d)
    trainer = LoraTrainer(d, data, cfg, tmp_path)
    trainer.run()
    final = trainer.save_lora(tmp_path / "final.safetensors")
    e = est.estimate(d, cfg, est_model.largest_workload(data), device="cpu", throughput=1e9, output_dir=tmp_path)
    ckpt_files = sorted((tmp_path / "checkpoints").iterdir())
    assert [p.suffix for p in ckpt_files] == [".ckpt", ".safetensors"]  # keep_checkpoints=1 pruned the rest
    written = sum(p.stat().st_size for p in ckpt_files)
    assert e.checkpoint_bytes == pytest.approx(written, rel=0.10)
    assert e.lora_file_bytes == pytest.approx(final["bytes"], rel=0.10)
    # Peak disk: the newest checkpoint lands before the previous one is pruned.
    assert e.disk_bytes == pytest.approx(2 * written + final["bytes"], rel=0.10)
    assert 0 < e.disk_free


def test_disk_and_ram_shortfalls_are_problems(tmp_path):
    d = tiny_denoiser()
    e = _tiny_estimate(d, _cfg(keep_checkpoints=0, steps=8), output_dir=tmp_path / "not" / "yet")
    assert e.fits and e.disk_bytes == 4 * e.checkpoint_bytes + e.lora_file_bytes
    e.disk_free, e.ram_available = 10, 10
    assert [p.code for p in e.problems] == ["ram", "disk"]
    with pytest.raises(est.WillNotFit, match="keep fewer checkpoints"):
        e.raise_if_unfit()


def test_refine_with_probe_replaces_the_guesses(full):
    e = est.estimate(full, _full_cfg(), _full_work("960x544x49"), vram_available=24 * GiB, throughput=4e14)
    refined = est.refine_with_probe(e, [0.95, 0.90, 0.91], peak_bytes=41 * GiB)
    assert refined.measured and not e.measured
    assert refined.sec_per_step == pytest.approx(0.91) and refined.eta_sec == pytest.approx(0.91 * 1500)
    assert refined.vram_bytes == 41 * GiB and e.vram_bytes != 41 * GiB
    ratio = 41 * GiB / e.vram_bytes
    assert [f.vram for f in refined.fixes] == [round(f.vram * ratio) for f in e.fixes]
    assert "measured" in refined.summary() and "41.0 GiB of 24.0 GiB available" in refined.summary()
    with pytest.raises(ValueError):
        est.refine_with_probe(e, [])


def test_summary_reads_in_gib_and_hours(full):
    e = est.estimate(full, _full_cfg(steps=6000), _full_work("960x544x49"), vram_available=80 * GiB,
                     ram_available=64 * GiB, throughput=4e14, device="cuda")
    text = e.summary()
    assert e.fits
    assert "bucket 960x544x49 (3570 tokens)" in text and "GiB of 80.0 GiB available" in text
    assert " h " in text and "min" in text and "peak in the backward" in text


def test_cpu_probe_refines_the_eta(tmp_path):
    d = tiny_denoiser()
    cfg = _cfg(steps=3, checkpoint_every=100)
    data = tiny_data(d)
    e = est.estimate(d, cfg, est_model.largest_workload(data), device="cpu", ram_available=est.system_ram_available())
    assert e.fits and e.sec_per_step > 0
    stamps = []
    events = []

    def on_event(event):
        if event.kind == "step":
            stamps.append(time.perf_counter())
            events.append(event)

    trainer = LoraTrainer(d, data, cfg, tmp_path, on_event=on_event)
    stamps.append(time.perf_counter())
    trainer.run()
    measured = [b - a for a, b in zip(stamps, stamps[1:])]
    refined = est.refine_with_probe(e, measured[1:])
    assert refined.sec_per_step == pytest.approx(statistics.median(measured[1:]))
    assert refined.eta_sec == pytest.approx(refined.sec_per_step * cfg.steps)
    assert refined.measured and not e.measured and len(events) == 3
