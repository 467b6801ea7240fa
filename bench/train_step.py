"""Training-step speed and memory: miniclip against transformers.CLIPModel and open_clip.CLIP, same config.

One step = forward + backward + AdamW update on a batch of (image, caption) pairs, fp32, GELU, causal text mask,
the same contrastive loss. Each (round, model) runs in a fresh process, so one model's memory peak cannot hide
another's, and the rounds interleave the models because the machine's speed drifts; the table shows medians.

    python bench/train_step.py                         # 4.4M-parameter CLIP, 64 px, batch 128, 2 threads, CPU
    python bench/train_step.py --device cuda --batch-size 512 --steps 50
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import time

# A 4.4M-parameter CLIP: 64 px, patch 8, width 192, depth 4 (both towers).
CONFIG = dict(image_size=64, patch_size=8, vision_width=192, vision_layers=4, vision_heads=3, context_length=32,
              vocab_size=4096, eot_token_id=3, text_width=192, text_layers=4, text_heads=3, embed_dim=192, mlp_ratio=4,
              activation="gelu")
MODELS = ("miniclip", "transformers", "open_clip")
LIBRARY = {"miniclip": "miniclip.model", "transformers": "transformers.models.clip.modeling_clip", "open_clip": "open_clip"}


def build(name: str):
    """The model `name` with CONFIG -> a function (images, tokens) -> logits_per_image [B, B]."""
    c = CONFIG
    if name == "miniclip":
        from miniclip import CLIPConfig, MiniCLIP

        model = MiniCLIP(CLIPConfig(**c))
        return model, lambda images, tokens: model(images, tokens)[0]
    if name == "transformers":
        import transformers

        common = dict(hidden_act=c["activation"], layer_norm_eps=1e-5, projection_dim=c["embed_dim"])
        model = transformers.CLIPModel(transformers.CLIPConfig(
            text_config=dict(vocab_size=c["vocab_size"], hidden_size=c["text_width"], num_hidden_layers=c["text_layers"],
                             num_attention_heads=c["text_heads"], intermediate_size=c["mlp_ratio"] * c["text_width"],
                             max_position_embeddings=c["context_length"], eos_token_id=c["eot_token_id"],
                             bos_token_id=2, pad_token_id=0, **common),
            vision_config=dict(image_size=c["image_size"], patch_size=c["patch_size"], hidden_size=c["vision_width"],
                               num_hidden_layers=c["vision_layers"], num_attention_heads=c["vision_heads"],
                               intermediate_size=c["mlp_ratio"] * c["vision_width"], **common),
            projection_dim=c["embed_dim"],
        ))
        return model, lambda images, tokens: model(input_ids=tokens, pixel_values=images).logits_per_image
    if name == "open_clip":
        import open_clip

        model = open_clip.CLIP(
            embed_dim=c["embed_dim"],
            vision_cfg=dict(layers=c["vision_layers"], width=c["vision_width"], head_width=c["vision_width"] // c["vision_heads"],
                            mlp_ratio=c["mlp_ratio"], patch_size=c["patch_size"], image_size=c["image_size"]),
            text_cfg=dict(context_length=c["context_length"], vocab_size=c["vocab_size"], width=c["text_width"],
                          heads=c["text_heads"], layers=c["text_layers"], mlp_ratio=c["mlp_ratio"],
                          pool_type="eos", eos_id=c["eot_token_id"], pad_id=0),
            quick_gelu=c["activation"] == "quick_gelu",
        )

        def logits(images, tokens):
            image_features, text_features, scale = model(images, tokens)  # both normalised
            return scale * image_features @ text_features.t()

        return model, logits
    raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")


def batch(batch_size: int, device):
    """Random images [B, 3, S, S] and captions [B, T]: <start>, words, <end>, padding (as miniclip.Tokenizer lays out)."""
    import torch

    g = torch.Generator().manual_seed(0)
    S, T, V = CONFIG["image_size"], CONFIG["context_length"], CONFIG["vocab_size"]
    images = torch.randn(batch_size, 3, S, S, generator=g)
    tokens = torch.randint(4, V, (batch_size, T), generator=g)
    tokens[:, 0] = 2
    for row, end in zip(tokens, torch.randint(4, T, (batch_size,), generator=g)):
        row[end], row[end + 1:] = CONFIG["eot_token_id"], 0
    return images.to(device), tokens.to(device)


def rss_mib() -> float:
    """The resident memory of this process now (Linux; elsewhere the peak so far, a cruder baseline)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024  # kB -> MiB
    except OSError:
        return rss_peak_mib()


def rss_peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def child(args) -> dict:
    """Time one model in this (fresh) process: pairs/s and the memory it added at its peak."""
    import torch

    from miniclip.loss import clip_loss

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    for name in args.models.split(","):  # every library is imported before the baseline, in every process alike
        importlib.import_module(LIBRARY[name])
    images, tokens = batch(args.batch_size, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
        base_cuda = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    base_rss = rss_mib()

    model, logits_of = build(args.model)
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)

    def step():
        loss = clip_loss(logits_of(images, tokens))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated() - base_cuda) / 2**20 if device.type == "cuda" else rss_peak_mib() - base_rss
    return dict(model=args.model, pairs_per_s=args.steps * args.batch_size / seconds, peak_mib=peak,
                params=sum(p.numel() for p in model.parameters()))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--rounds", type=int, default=3, help="runs per model, interleaved; the median is shown")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--model", help=argparse.SUPPRESS)  # set in the child process
    args = parser.parse_args()
    if args.model:
        print(json.dumps(child(args)))
        return

    models = [name for name in args.models.split(",") if importlib.util.find_spec(LIBRARY[name].split(".")[0])]
    for name in sorted(set(args.models.split(",")) - set(models)):
        print(f"skipping {name}: not installed (pip install -e '.[bench]')")
    print(f"config: {CONFIG}\nbatch {args.batch_size}, {args.steps} timed steps after {args.warmup}, "
          f"{args.threads} threads, {args.device}, {args.rounds} rounds, fp32")
    runs = {name: [] for name in models}
    for r in range(args.rounds):
        for name in models:
            cmd = [sys.executable, __file__, "--model", name] + [
                f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k not in ("model", "rounds")]
            out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
            if out.returncode:
                sys.exit(f"{name} failed:\n{out.stderr}")
            runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"  round {r + 1} {name:12s} {runs[name][-1]['pairs_per_s']:7.1f} pairs/s  "
                  f"peak +{runs[name][-1]['peak_mib']:.0f} MiB", flush=True)

    speed = {name: [run["pairs_per_s"] for run in runs[name]] for name in models}
    median = {name: statistics.median(speed[name]) for name in models}
    peak = {name: statistics.median(run["peak_mib"] for run in runs[name]) for name in models}
    memory = "peak CUDA +MiB" if args.device.startswith("cuda") else "peak RSS +MiB"
    print(f"\n| model | parameters | pairs/s median (best) | miniclip / this, median (best) | {memory} |")
    print("| --- | --- | --- | --- | --- |")
    for name in models:
        ours = name if "miniclip" not in models else "miniclip"
        print(f"| {name} | {runs[name][0]['params'] / 1e6:.2f}M | {median[name]:.1f} ({max(speed[name]):.1f}) | "
              f"{median[ours] / median[name]:.2f}x ({max(speed[ours]) / max(speed[name]):.2f}x) | {peak[name]:.0f} |")
    if hasattr(os, "getloadavg") and os.getloadavg()[0] > (os.cpu_count() or 1):
        print(f"warning: load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores: other processes took "
              "CPU time, so these numbers are noisy (the best runs are the least disturbed)")


if __name__ == "__main__":
    main()
