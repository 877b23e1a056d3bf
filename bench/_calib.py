import gc, json, statistics, sys, tempfile, time
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_step import build_full_model
from trainer_core.config import recipe_config
from trainer_core.diffusers_denoiser import DiffusersLTX2Denoiser
from trainer_core.trainer import LoraTrainer
from trainer_core.training_data import InMemoryData, TrainItem

dev = torch.device("cuda")
model = build_full_model(dev, torch.bfloat16)
blocks = list(model.transformer_blocks)
den = DiffusersLTX2Denoiser(model, "ltx-2.3")
width = sum(den.context_widths())
CONFIGS = [
 ("960x544x49", True, 32, "video_attn", 0, 48),
 ("512x512x49", True, 32, "video_attn", 0, 48),
 ("960x544x49", False, 32, "video_attn", 0, 48),
 ("768x416x49", True, 32, "video_attn", 0, 48),
 ("960x544x97", True, 32, "video_attn", 0, 48),
 ("960x544x49", True, 128, "video_attn", 0, 48),
 ("960x544x49", True, 32, "video_attn,video_ff", 0, 48),
 ("960x544x49", True, 32, "video_attn", 51, 48),
 ("960x544x49", True, 32, "video_attn,audio_attn", 51, 48),
 ("512x512x49", False, 32, "video_attn", 0, 48),
 ("960x544x49", True, 32, "video_attn", 0, 12),
 ("960x544x49", False, 32, "video_attn", 0, 12),
 ("960x544x97", False, 32, "video_attn", 0, 12),
 ("960x544x49", False, 32, "video_attn,video_ff", 0, 12),
 ("1280x704x121", True, 32, "video_attn", 0, 48),
]
for bucket, ckpt, rank, targets, audio_t, nb in [c for c in CONFIGS[7:] if not c[4]]:
    model.transformer_blocks = torch.nn.ModuleList(blocks[:nb])
    w, h, f = (int(v) for v in bucket.split("x"))
    latent = (128, (f - 1) // 8 + 1, h // 32, w // 32)
    gen = torch.Generator().manual_seed(0)
    item = TrainItem("b", torch.randn(*latent, generator=gen), torch.randn(1024, width, generator=gen), fps=24.0,
                     audio_latents=torch.randn(8, audio_t, 16, generator=gen) if audio_t else None)
    data = InMemoryData([item], empty=torch.zeros(1024, width), name="b")
    cfg = recipe_config("character", steps=5, rank=rank, alpha=rank, targets=tuple(targets.split(",")),
                        gradient_checkpointing=ckpt, checkpoint_every=10**9, keep_checkpoints=1, train_audio=bool(audio_t))
    stamps, peaks = [], []
    def on_event(e):
        if e.kind == "step":
            torch.cuda.synchronize(); stamps.append(time.perf_counter())
            peaks.append(torch.cuda.max_memory_allocated()); torch.cuda.reset_peak_memory_stats()
    gc.collect(); torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    try:
        with tempfile.TemporaryDirectory() as out:
            tr = LoraTrainer(den, data, cfg, out, on_event=on_event)
            lora_alloc = torch.cuda.memory_allocated() - base
            stamps.append(time.perf_counter())
            tr.run()
        st = [b - a for a, b in zip(stamps[2:], stamps[3:])]
        rec = dict(bucket=bucket, ckpt=ckpt, rank=rank, targets=targets, audio=audio_t, blocks=nb,
                   tokens=latent[1]*latent[2]*latent[3], base=base, lora_alloc=lora_alloc,
                   lora_params=sum(p.numel() for p in tr.lora.trainable_parameters()),
                   peaks=peaks, step_s=statistics.median(st), steps=st, reserved=torch.cuda.max_memory_reserved())
    except torch.OutOfMemoryError as exc:
        rec = dict(bucket=bucket, ckpt=ckpt, blocks=nb, oom=str(exc)[:200])
    print(json.dumps(rec), flush=True)
    tr = None
print("done", torch.cuda.get_device_name(), torch.__version__)
