"""The trainer's forward through ComfyUI's own LTX model: parity with ComfyUI, exact gradients, the start-up
self-check, and training on weights loaded under inference mode without touching the user's model."""

from __future__ import annotations

import importlib

import pytest
import tiny_checkpoint as tc
import torch
from gradcheck import assert_matches_finite_differences


@pytest.fixture(scope="module")
def pack_modules(comfy_pack):
    name = comfy_pack.module.__name__

    def load(sub):
        return importlib.import_module(f"{name}.{sub}")

    return load


def _inputs(dm, audio: bool, dtype=torch.float32, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    widths = sum((dm.cross_attention_dim, dm.audio_cross_attention_dim) if dm.caption_proj_before_connector
                 else (dm.caption_channels, dm.caption_channels))
    x = [torch.randn(1, 128, 3, 2, 2, generator=gen, dtype=dtype)]
    if audio:
        x.append(torch.randn(1, 8, 5, 16, generator=gen, dtype=dtype))
    timesteps = torch.full((1, 12), 0.7, dtype=dtype)
    timesteps[:, :4] = 0.0
    return x, timesteps, torch.randn(1, 6, widths, generator=gen, dtype=dtype)


def _forward(dm, x, timesteps, context, block_fn=None):
    replace = {}
    if block_fn is not None:
        replace = {("double_block", i): block_fn(i) for i in range(len(dm.transformer_blocks))}
    a_t = torch.full((1,), 0.7, dtype=timesteps.dtype)
    out = dm([t.clone() for t in x], (timesteps, a_t), context, frame_rate=24.0,
             transformer_options={"patches_replace": {"dit": replace}})
    return out if isinstance(out, list) else [out]


@pytest.mark.parametrize("version", ["2.3", "2.0"])
@pytest.mark.parametrize("audio", [True, False])
def test_training_forward_equals_comfyui_forward(pack_modules, version, audio):
    denoiser_mod = pack_modules("comfy_adapters.denoiser")
    dm = tc.random_dit(version)
    x, timesteps, context = _inputs(dm, audio)
    den = denoiser_mod.ComfyLTXDenoiser(dm)
    assert den.base_model_version == ("ltx-2.3" if version == "2.3" else "ltx-2.0")
    with torch.no_grad():
        stock = _forward(dm, x, timesteps, context)
        # The pack's own audio<->video AdaLN arguments are tested in test_cross_timestep; here the block gets
        # ComfyUI's, to prove the block itself computes what ComfyUI's does.
        ours = _forward(dm, x, timesteps, context, lambda i: den._block(i, {}))
    assert len(ours) == len(stock) == (2 if audio else 1)
    for a, b in zip(ours, stock):
        assert ((a - b).norm() / b.norm()).item() <= 1e-5
    assert denoiser_mod.check_block_parity(dm, torch.device("cpu")).ok


@pytest.mark.parametrize("checkpointing", [False, True])
def test_float64_gradients_match_central_finite_differences(pack_modules, checkpointing):
    denoiser_mod = pack_modules("comfy_adapters.denoiser")
    lora_mod = pack_modules("trainer_core.training.lora")
    dm = tc.random_dit("2.3", dtype=torch.float64)
    x, timesteps, context = _inputs(dm, audio=True, dtype=torch.float64)
    den = denoiser_mod.ComfyLTXDenoiser(dm)
    den.set_gradient_checkpointing(checkpointing)
    targets = lora_mod.select_targets(den.lora_targets(), ["video_attn", "video_ff", "audio_attn", "av_cross_attn"])
    lora = lora_mod.LoraSet(targets, rank=2, alpha=2, seed=3).double()
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for a in lora.adapters:
            a.lora_B.copy_(torch.randn(a.lora_B.shape, generator=gen, dtype=torch.float64) * 0.2)
    proj = [torch.randn(t.shape, generator=torch.Generator().manual_seed(9), dtype=torch.float64) for t in x]

    def scalar():
        outs = _forward(dm, x, timesteps, context, lambda i: den._block(i, {}))
        return sum((o * p).sum() for o, p in zip(outs, proj))

    with lora.attached():
        with torch.enable_grad():
            scalar().backward()
        by_name = dict(lora.items())
        probes = [("transformer_blocks.0.attn1.to_q", "lora_A", (1, 5)),
                  ("transformer_blocks.0.attn2.to_k", "lora_B", (3, 0)),
                  ("transformer_blocks.1.ff.net.2", "lora_A", (0, 17)),
                  ("transformer_blocks.0.audio_attn1.to_v", "lora_B", (2, 1)),
                  ("transformer_blocks.1.audio_to_video_attn.to_out.0", "lora_A", (1, 2)),
                  ("transformer_blocks.0.video_to_audio_attn.to_q", "lora_B", (0, 1))]
        # Rounding of the float64 differences is ~1e-9 here; the known wrong-gradient traps are off by 0.2-9 %.
        assert_matches_finite_differences(
            scalar, [(getattr(by_name[name], which), idx) for name, which, idx in probes], rel=1e-5, abs=1e-8)


@pytest.mark.parametrize("mode", ["compiled", "compiled-checkpoint"])
def test_compiled_block_gives_exact_gradients_with_one_graph_for_every_block(pack_modules, mode):
    """The regional compile under per-block checkpointing, traced by Dynamo and AOTAutograd as on a GPU (the
    ``aot_eager`` backend: this CPU has no Triton). Every block has its own weights and LoRA hooks, yet one graph
    must serve them all, and the gradients must still be the float64 finite differences."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    block_compile = pack_modules("comfy_adapters.block_compile")
    denoiser_mod = pack_modules("comfy_adapters.denoiser")
    lora_mod = pack_modules("trainer_core.training.lora")
    dm = tc.random_dit("2.3", dtype=torch.float64)
    x, timesteps, context = _inputs(dm, audio=False, dtype=torch.float64)
    den = denoiser_mod.ComfyLTXDenoiser(dm)
    den.set_gradient_checkpointing(True)
    den.runner = block_compile.BlockRunner(mode, backend="aot_eager")
    lora = lora_mod.LoraSet(lora_mod.select_targets(den.lora_targets(), ["video_attn"]), rank=2, alpha=2,
                            seed=3).double()
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for a in lora.adapters:
            a.lora_B.copy_(torch.randn(a.lora_B.shape, generator=gen, dtype=torch.float64) * 0.2)
    proj = torch.randn(x[0].shape, generator=torch.Generator().manual_seed(9), dtype=torch.float64)

    def scalar():
        return (_forward(dm, x, timesteps, context, den._block)[0] * proj).sum()

    torch._dynamo.reset()
    counters.clear()
    with lora.attached():
        with torch.enable_grad():
            scalar().backward()
        assert counters["stats"]["unique_graphs"] == 1
        by_name = dict(lora.items())
        probes = [("transformer_blocks.0.attn1.to_q", "lora_A", (1, 5)),
                  ("transformer_blocks.1.attn2.to_v", "lora_B", (3, 0)),
                  ("transformer_blocks.1.attn1.to_out.0", "lora_A", (0, 2))]
        assert_matches_finite_differences(
            scalar, [(getattr(by_name[name], which), idx) for name, which, idx in probes], rel=1e-5, abs=1e-8)
    torch._dynamo.reset()


def test_a_failing_compiler_falls_back_to_the_eager_block_and_says_so(pack_modules, caplog):
    import torch._dynamo

    block_compile = pack_modules("comfy_adapters.block_compile")
    denoiser_mod = pack_modules("comfy_adapters.denoiser")
    dm = tc.random_dit("2.3")
    x, timesteps, context = _inputs(dm, audio=False)
    den = denoiser_mod.ComfyLTXDenoiser(dm)

    def broken_backend(graph, example_inputs):
        raise RuntimeError("no C compiler")

    torch._dynamo.reset()
    den.runner = block_compile.BlockRunner("compiled", backend=broken_backend)
    with torch.no_grad(), caplog.at_level("WARNING"):
        ours = _forward(dm, x, timesteps, context, den._block)
        stock = _forward(dm, x, timesteps, context)
    torch._dynamo.reset()
    assert den.runner.mode == "eager"
    assert "compiling the training block failed" in caplog.text and "no C compiler" in caplog.text
    assert ((ours[0] - stock[0]).norm() / stock[0].norm()).item() <= 1e-5


def test_blocks_run_eagerly_where_compiling_cannot_pay_and_the_log_says_why(pack_modules, caplog):
    block_compile = pack_modules("comfy_adapters.block_compile")
    with caplog.at_level("INFO"):
        runner = block_compile.choose_runner(tc.random_dit("2.3"), torch.device("cpu"))
    assert runner.mode == "eager"
    assert "run eagerly (not compiled): the device is cpu" in caplog.text


def test_self_check_refuses_a_changed_comfyui_block(pack_modules, monkeypatch):
    denoiser_mod = pack_modules("comfy_adapters.denoiser")
    from comfy.ldm.lightricks.av_model import BasicAVTransformerBlock

    dm = tc.random_dit("2.3")
    assert denoiser_mod.ensure_training_forward_matches(dm, torch.device("cpu")).ok
    original = BasicAVTransformerBlock.forward

    def changed(self, x, **kwargs):
        vx, ax = original(self, x, **kwargs)
        return vx * 1.01, ax

    monkeypatch.setattr(BasicAVTransformerBlock, "forward", changed)
    with pytest.raises(denoiser_mod.TrainingForwardMismatch, match=r"ComfyUI \S+ computes the LTX transformer"):
        denoiser_mod.ensure_training_forward_matches(dm, torch.device("cpu"))


def _one_clip(pack_modules, model):
    data_mod = pack_modules("trainer_core.cache.training_data")
    inputs = tc.build_inputs(model, frames=2, height=2, width=3)
    gen = torch.Generator().manual_seed(0)
    item = data_mod.TrainItem("clip", torch.randn(128, 2, 2, 3, generator=gen), inputs["context"][0], fps=24.0)
    return data_mod.InMemoryData([item], empty=torch.zeros_like(item.context))


def _train_as_the_node_does(pack_modules, dm, data, cfg, folder):
    """Inside inference mode (every node runs there), on the loaded model's inference-tensor weights."""
    denoiser_mod = pack_modules("comfy_adapters.denoiser")
    trainer_mod = pack_modules("trainer_core.training.trainer")
    with torch.inference_mode(), denoiser_mod.trainable_view(dm):
        return trainer_mod.LoraTrainer(denoiser_mod.ComfyLTXDenoiser(dm), data, cfg, folder).run()


def test_trains_on_inference_mode_weights_and_leaves_the_model_as_it_was(pack_modules, tiny_ltx23_ckpt, run_node,
                                                                          tmp_path):
    config_mod = pack_modules("trainer_core.training.config")
    model, _, _ = run_node("CheckpointLoaderSimple", ckpt_name=tiny_ltx23_ckpt)
    dm = model.model.diffusion_model
    params_before = {n: p for n, p in dm.named_parameters()}
    values_before = {n: p.clone() for n, p in params_before.items()}
    assert all(p.is_inference() for p in params_before.values())
    cfg = config_mod.recipe_config("style", steps=40, rank=4, alpha=4, learning_rate=2e-2, caption_dropout=0.0,
                                   mixed_precision="no", sigma_uniform_prob=0.0, schedule="constant",
                                   checkpoint_every=40)
    losses = _train_as_the_node_does(pack_modules, dm, _one_clip(pack_modules, model), cfg, tmp_path).losses
    assert sum(losses[-8:]) / 8 < 0.85 * sum(losses[:8]) / 8
    after = dict(dm.named_parameters())
    assert all(after[n] is params_before[n] for n in params_before), "original parameter objects must be restored"
    assert all(torch.equal(after[n], values_before[n]) for n in params_before)
    assert all(not m._forward_hooks for m in dm.modules())


def test_streamed_weights_train_exactly_like_resident_ones(pack_modules, tiny_ltx23_ckpt, run_node, tmp_path):
    """ComfyUI's low-VRAM mode keeps layers that do not fit off the GPU and copies their weights in per use
    (``comfy_cast_weights``, ``cast_bias_weight``). Training through that path must give the same steps."""
    config_mod = pack_modules("trainer_core.training.config")
    model, _, _ = run_node("CheckpointLoaderSimple", ckpt_name=tiny_ltx23_ckpt)
    dm = model.model.diffusion_model
    data = _one_clip(pack_modules, model)
    cfg = config_mod.recipe_config("style", steps=4, rank=4, alpha=4, learning_rate=1e-2, mixed_precision="no",
                                   checkpoint_every=4)
    resident = _train_as_the_node_does(pack_modules, dm, data, cfg, tmp_path / "resident")
    linears = [m for m in dm.modules() if hasattr(m, "comfy_cast_weights")]
    assert linears
    for m in linears:
        m.comfy_cast_weights = True
    try:
        streamed = _train_as_the_node_does(pack_modules, dm, data, cfg, tmp_path / "streamed")
    finally:
        for m in linears:
            m.comfy_cast_weights = False
    assert streamed.losses == resident.losses
    a, b = resident.lora.state(), streamed.lora.state()
    assert all(torch.equal(a[k], b[k]) for k in a)
