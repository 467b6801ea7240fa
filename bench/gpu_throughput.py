"""Training throughput and model FLOPs utilisation (MFU) of coco-small and coco-base on one GPU.

    python bench/gpu_throughput.py                      # both presets, bf16, with and without torch.compile
    python bench/gpu_throughput.py --device cpu --steps 3 --images 2048 --presets coco-small   # a smoke run

COCO cannot be fetched on a machine without internet, so the data is a synthetic cache of the Karpathy train
size (118k images of random pixels, random captions) run through the real loader (miniclip.data.cache.Batches).
MFU = achieved model FLOP/s / the GPU's peak bf16 FLOP/s (--peak-tflops, default 989 for an H100/H200 SXM
dense bf16). Model FLOPs per pair = 3 x forward (forward + backward), forward counted from the config:
2 x multiply-adds of every linear layer per token, plus attention's two T x T products.
precision: the autocast dtype that miniclip.device.precision chooses for the device (what training uses).
Target (issue 4): MFU of 35% or more for coco-base.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from miniclip.config import CLIPConfig
from miniclip.data import PairedData
from miniclip.data.batches import Batches
from miniclip.config import TrainConfig
from miniclip.device import precision
from miniclip.train import _Features, param_groups, train_step
from miniclip.model import MiniCLIP


def forward_flops_per_pair(cfg: CLIPConfig) -> float:
    """Forward FLOPs of one (image, caption) pair: 2 per multiply-add, linear layers and attention products."""

    def tower(tokens: int, width: int, layers: int) -> float:
        linear = 12 * width * width  # qkv (3 w^2) + out (w^2) + mlp (8 w^2 at ratio 4), multiply-adds per token
        attention = 2 * tokens * width  # q @ k^T and attn @ v, multiply-adds per token
        return 2 * layers * tokens * (linear + attention)

    image_tokens = cfg.num_patches + 1
    patch = 2 * cfg.num_patches * (3 * cfg.patch_size**2) * cfg.vision_width
    heads = 2 * (cfg.vision_width + cfg.text_width) * cfg.embed_dim
    return (tower(image_tokens, cfg.vision_width, cfg.vision_layers) + patch
            + tower(cfg.context_length, cfg.text_width, cfg.text_layers) + heads)


def synthetic_cache(n: int, size: int, context: int, vocab: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)  # [N, S, S, 3]
    tokens = torch.from_numpy(rng.integers(4, vocab, (n, context))).long()  # [N, T] one caption per image
    ends = rng.integers(8, context, n)
    tokens[np.arange(n), ends] = 3
    data = PairedData(images, [""] * n, np.arange(n))
    return data, tokens


def measure(preset: str, compile: bool, args) -> dict:
    cfg = CLIPConfig.preset(preset)
    tcfg = TrainConfig.for_preset(preset)
    batch = args.batch_size or tcfg.batch_size
    device = torch.device(args.device)
    data, tokens = synthetic_cache(args.images, cfg.image_size, cfg.context_length, cfg.vocab_size)
    batches = Batches(data, tokens, batch, device=device, seed=0, augment=True)
    torch.manual_seed(0)
    model = MiniCLIP(cfg).to(device)
    optimizer = torch.optim.AdamW(param_groups(model, 0.1, 1.0), lr=1e-4, betas=(0.9, 0.98), eps=1e-6,
                                  fused=device.type == "cuda")
    net = torch.compile(_Features(model)) if compile else _Features(model)
    autocast, dtype = precision(device)  # bf16 on A100/H100/H200, fp16 on a T4, fp32 on a CPU

    def step(i):
        images, toks, _ = batches.get(i)
        with autocast:
            loss = train_step(net, images, toks)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    for i in range(args.warmup):
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    for i in range(args.warmup, args.warmup + args.steps):
        loss = step(i)
    loss.item()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t
    pairs_s = args.steps * batch / seconds
    flops = 3 * forward_flops_per_pair(cfg) * pairs_s
    return dict(preset=preset, compile=compile, batch=batch, params_m=model.num_parameters() / 1e6,
                pairs_s=pairs_s, tflops=flops / 1e12, mfu=flops / (args.peak_tflops * 1e12),
                precision=str(dtype).removeprefix("torch."),
                peak_gb=torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["coco-small", "coco-base"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, default=118_287)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile runs")
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    print(f"{'preset':<11} {'compile':<8} {'batch':>5} {'params M':>9} {'pairs/s':>9} {'TFLOP/s':>8} {'MFU':>6} "
          f"{'peak GB':>8} precision")
    for preset in args.presets:
        for compile in ([False] if args.no_compile or args.device == "cpu" else [False, True]):
            r = measure(preset, compile, args)
            print(f"{r['preset']:<11} {str(r['compile']):<8} {r['batch']:>5} {r['params_m']:>9.1f} {r['pairs_s']:>9.0f} "
                  f"{r['tflops']:>8.1f} {r['mfu']:>6.1%} {r['peak_gb']:>8.2f} {r['precision']}")


if __name__ == "__main__":
    main()
