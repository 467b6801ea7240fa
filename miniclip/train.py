"""Training: the contrastive loop, from a data source to a run directory.

    history = miniclip.train(preset="shapes-tiny", data="shapes", out="runs/tiny").history   # ~1 minute on a CPU

or from a shell: `miniclip train --preset shapes-tiny --data shapes --out runs/tiny`, and on several GPUs
`torchrun --nproc_per_node=4 -m miniclip train ...`. A run directory holds

    model.safetensors, config.json, tokenizer.json   the model (miniclip.load reads it)
    train_state.safetensors                          optimiser moments and step, for --resume
    run.json                                         how the run was started
    metrics.jsonl                                    one JSON object per logged step and per evaluation
    history.png                                      loss and temperature
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file
from tqdm.auto import tqdm

from miniclip.checkpoint import load_state_dict_checked, save, save_tensors
from miniclip.config import CLIPConfig
from miniclip.data import PairedData, load_pairs
from miniclip.fileio import atomic_write_json
from miniclip.loss import distributed_clip_loss
from miniclip.model import MiniCLIP
from miniclip.tokenizer import Tokenizer


@dataclass
class TrainConfig:
    """Everything that defines a run; `TrainConfig.preset(name)` fills in what suits a model preset."""

    preset: str = "shapes-tiny"
    data: str = "shapes"  # "shapes" (generated, offline) or a cache directory from `miniclip prepare`
    steps: int = 1000
    batch_size: int = 256  # pairs per step, over all GPUs together
    lr: float = 4e-3
    text_lr_scale: float = 0.1  # the text tower learns at this fraction of lr (REFERENCES.md, the shapes prototype)
    weight_decay: float = 0.1  # on matrices only
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    warmup_steps: int = 100
    grad_clip: float = 1.0
    seed: int = 0
    log_every: int = 10
    eval_every: int = 250  # 0: only at the end
    checkpoint_every: int = 500  # 0: only at the end
    hard_negatives: bool = False  # add each relation caption's argument-swapped twin as a negative (NegCLIP)
    augment: bool = False  # random resized crops (never flips)
    compile: bool = False  # torch.compile the model (GPU)
    device: str = "auto"
    # shapes world only
    num_images: int = 50_000
    word_fraction: float = 0.0  # share of training images with a word written on them
    shapes_options: dict = field(default_factory=dict)  # other knobs of miniclip.data.shapes.generate
    model_overrides: dict = field(default_factory=dict)  # fields of CLIPConfig to change from the preset

    @classmethod
    def preset(cls, name: str, **overrides) -> "TrainConfig":
        """The training recipe that goes with a model preset, with any field overridden."""
        return cls(**{**dict(preset=name), **TRAIN_PRESETS.get(name, {}), **overrides})

    def model_config(self) -> CLIPConfig:
        return CLIPConfig.preset(self.preset, **self.model_overrides)


TRAIN_PRESETS = {
    "shapes-tiny": dict(steps=1000, batch_size=256, lr=4e-3, warmup_steps=100, text_lr_scale=0.1),
    "coco-small": dict(steps=20_000, batch_size=256, lr=1e-3, warmup_steps=1000, text_lr_scale=1.0, augment=True,
                       eval_every=2000, checkpoint_every=2000, num_images=0),
    "coco-base": dict(steps=30_000, batch_size=512, lr=5e-4, warmup_steps=2000, text_lr_scale=1.0, augment=True,
                      eval_every=2000, checkpoint_every=2000, compile=True, num_images=0),
}


@dataclass
class TrainResult:
    model: MiniCLIP
    tokenizer: Tokenizer
    history: list[dict]
    out: Path | None


# ----------------------------------------------------------------------------------------------------------------
# pieces of the loop


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to cfg.lr, then a cosine decay to 0 at cfg.steps."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def param_groups(model: nn.Module, weight_decay: float, text_lr_scale: float) -> list[dict]:
    """AdamW groups: weight decay on matrices only (not on norms, biases, embeddings or the temperature);
    the text tower's learning rate scaled by text_lr_scale (kept in each group as "lr_scale")."""
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        is_text = name.startswith("text.")
        no_decay = p.ndim < 2 or "embedding" in name or name == "logit_scale"
        groups.setdefault((is_text, no_decay), []).append(p)
    return [
        {"params": ps, "weight_decay": 0.0 if no_decay else weight_decay, "lr_scale": text_lr_scale if is_text else 1.0}
        for (is_text, no_decay), ps in sorted(groups.items())
    ]


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over param_groups(model); the fused kernel (one pass over all tensors) where this torch has it."""
    groups = param_groups(model, cfg.weight_decay, cfg.text_lr_scale)
    try:  # fused AdamW runs on CUDA (torch >= 2.0) and on the CPU (torch >= 2.4): ~5% faster shapes-tiny steps
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, fused=True)
    except (RuntimeError, ValueError):  # an older torch, or a device without the kernel
        # fresh groups: the failed constructor may already have written fused=True into the old ones
        return torch.optim.AdamW(param_groups(model, cfg.weight_decay, cfg.text_lr_scale), lr=cfg.lr,
                                 betas=cfg.betas, eps=cfg.eps)


RELATION_WORDS = (" to the left of ", " to the right of ", " above ", " below ")


def swap_relation(caption: str) -> str | None:
    """'a red circle to the left of a blue star' -> 'a blue star to the left of a red circle' (None if no relation).

    A leading "a photo of " and a final full stop stay where they are. The same words in another order: a bag-of-words text encoder cannot tell the two apart, so as an extra
    negative it forces the model to use word order (NegCLIP, Yuksekgonul et al., 2023).
    """
    stop = "." if caption.endswith(".") else ""  # the full stop stays at the end
    caption = caption[: len(caption) - len(stop)]
    prefix = "a photo of " if caption.startswith("a photo of ") else ""  # so does the prefix
    for rel in RELATION_WORDS:
        if rel in caption:
            left, right = caption[len(prefix):].split(rel, 1)
            return f"{prefix}{right}{rel}{left}{stop}"
    return None


class _Features(nn.Module):
    """One forward() for both towers, so that DDP (which hooks forward) sees the whole pass."""

    def __init__(self, model: MiniCLIP):
        super().__init__()
        self.model = model

    def forward(self, images, tokens):
        image_features = F.normalize(self.model.encode_image(images), dim=-1)  # [n, D]
        text_features = F.normalize(self.model.encode_text(tokens), dim=-1)  # [n + m, D]
        return image_features, text_features, self.model.scale()


def train_step(net: nn.Module, images, tokens, negatives=None) -> torch.Tensor:
    """The loss of one batch: images [n,3,H,W], tokens [n,T], optional hard-negative tokens [m,T].

    net is _Features(model), possibly wrapped in DDP; with several processes the negatives are the global batch.
    """
    n = tokens.shape[0]
    all_tokens = tokens if negatives is None else torch.cat([tokens, negatives])  # [n + m, T]
    image_features, text_features, scale = net(images, all_tokens)
    extra = text_features[n:] if negatives is not None else None
    return distributed_clip_loss(image_features, text_features[:n], scale, extra)


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _distributed() -> tuple[int, int]:
    """(rank, world size); starts the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


# ----------------------------------------------------------------------------------------------------------------
# saving and resuming


def save_train_state(optimizer: torch.optim.Optimizer, step: int, path: Path) -> None:
    """Optimiser moments and the step, as safetensors (tensors) + JSON metadata (the rest). Atomic."""
    state = optimizer.state_dict()
    tensors = {f"{i}.{k}": v for i, s in state["state"].items() for k, v in s.items() if torch.is_tensor(v)}
    groups = [{k: v for k, v in g.items() if k != "params"} | {"params": g["params"]} for g in state["param_groups"]]
    save_tensors(tensors, path, metadata={"step": str(step), "param_groups": json.dumps(groups)})


def load_train_state(optimizer: torch.optim.Optimizer, path: Path) -> int:
    """Restore what save_train_state wrote; returns the step to continue from."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    tensors = load_file(str(path))
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        i, name = key.split(".", 1)
        state.setdefault(int(i), {})[name] = value
    groups = json.loads(meta["param_groups"])
    for g in groups:
        g["betas"] = tuple(g["betas"])
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    return int(meta["step"])


def _checkpoint(out: Path, model, tokenizer, optimizer, step) -> None:
    save(model, tokenizer, out)
    save_train_state(optimizer, step, out / "train_state.safetensors")


# ----------------------------------------------------------------------------------------------------------------
# the run


def train(cfg: TrainConfig | None = None, *, out=None, resume: bool = False, progress: bool = True,
          eval_fn=None, **overrides) -> TrainResult:
    """Train a MiniCLIP; returns TrainResult(model, tokenizer, history, out).

    cfg: a TrainConfig, or keywords such as preset="shapes-tiny", steps=300 (a preset's recipe is filled in).
    out: the run directory (None: nothing is written). resume: continue from out's last checkpoint.
    eval_fn(model, tokenizer) -> dict of metrics, called every cfg.eval_every steps and at the end
    (default: miniclip.evaluate.evaluate_suite on held-out data of the same source).
    """
    if cfg is None:
        cfg = TrainConfig.preset(overrides.pop("preset", "shapes-tiny"), **overrides)
    elif overrides:
        cfg = dataclasses.replace(cfg, **overrides)
    rank, world = _distributed()
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} must be divisible by the number of processes ({world})")
    device = pick_device(cfg.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    seed_everything(cfg.seed)
    out = Path(out) if out is not None else None
    main_process = rank == 0

    # --- data and tokenizer -------------------------------------------------------------------------------------
    model_cfg = cfg.model_config()
    train_data = load_pairs(cfg.data, "train", image_size=model_cfg.image_size, n=cfg.num_images or None,
                            seed=cfg.seed, word_fraction=cfg.word_fraction, **cfg.shapes_options)
    if resume and out is not None and (out / "tokenizer.json").is_file():
        tokenizer = Tokenizer.load(out / "tokenizer.json")
    else:
        tokenizer = Tokenizer.train(train_data.captions, model_cfg.vocab_size, model_cfg.context_length)
    model_cfg.vocab_size = max(model_cfg.vocab_size, tokenizer.vocab_size)
    model_cfg.eot_token_id = tokenizer.end_id
    tokens = tokenizer.encode(train_data.captions)  # [C, T], every caption once
    negatives = _hard_negative_tokens(train_data.captions, tokenizer) if cfg.hard_negatives else None

    from miniclip.data.cache import Batches

    batches = Batches(train_data, tokens, cfg.batch_size, device=device, seed=cfg.seed, augment=cfg.augment)

    # --- model and optimiser -----------------------------------------------------------------------------------------
    torch.manual_seed(cfg.seed)
    model = MiniCLIP(model_cfg).to(device)
    optimizer = make_optimizer(model, cfg)
    start, history = 0, []
    if resume:
        if out is None or not (out / "train_state.safetensors").is_file():
            raise FileNotFoundError(f"--resume: no checkpoint in {out} (train_state.safetensors is missing)")
        load_state_dict_checked(model, load_file(str(out / "model.safetensors"), device=str(device)), str(out))
        start = load_train_state(optimizer, out / "train_state.safetensors")
        history = [r for r in read_jsonl(out / "metrics.jsonl") if r.get("step", 0) <= start]
    net = _Features(model)
    if world > 1:
        net = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        net = torch.compile(net)
    if eval_fn is None:
        from miniclip.evaluate import evaluate_suite

        def eval_fn(m, t):
            return evaluate_suite(m, t, cfg.data, device=device, seed=cfg.seed)

    if out is not None and main_process:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "run.json", dataclasses.asdict(cfg) | {"world_size": world})
        if not resume:
            (out / "metrics.jsonl").write_text("")
            _checkpoint(out, model, tokenizer, optimizer, 0)
    log_file = open(out / "metrics.jsonl", "a") if out is not None and main_process else None
    if resume and log_file is not None:  # drop lines logged after the checkpoint we resume from
        log_file.close()
        _write_jsonl(out / "metrics.jsonl", history)
        log_file = open(out / "metrics.jsonl", "a")

    def record(row):
        history.append(row)
        if log_file is not None:
            log_file.write(json.dumps(row) + "\n")
            log_file.flush()

    # --- the loop --------------------------------------------------------------------------------------------------
    autocast, dtype = _precision(device)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    n_local = cfg.batch_size // world
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="training", disable=not (progress and main_process))
    t_last, pairs_since = time.perf_counter(), 0
    model.train()
    for step in bar:
        images, batch_tokens, image_idx = batches.get(step)
        lo = rank * n_local
        images, batch_tokens = images[lo:lo + n_local], batch_tokens[lo:lo + n_local]  # this process's share
        extra = None
        if negatives is not None:
            neg = negatives[batches.caption_ids(step)[lo:lo + n_local]]  # [n, T], rows of -1: no negative
            extra = neg[neg[:, 0] >= 0].to(device)
        lr = lr_at(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"]
        with autocast:
            loss = train_step(net, images, batch_tokens, extra)
        if not torch.isfinite(loss):
            if log_file is not None:
                log_file.close()
            raise FloatingPointError(
                f"the loss became {loss.item()} at step {step}; stopping. The last good checkpoint is kept"
                + (f" in {out} (continue with --resume, perhaps with a lower --lr)" if out is not None else "")
            )
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        model.clamp_logit_scale()  # the temperature never goes below 1/100
        pairs_since += cfg.batch_size
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            now = time.perf_counter()
            row = dict(step=done, loss=loss.item(), temperature=1 / model.scale().item(),
                       logit_scale=model.logit_scale.item(), lr=lr, pairs_per_s=pairs_since / (now - t_last))
            t_last, pairs_since = now, 0
            bar.set_postfix(loss=f"{row['loss']:.3f}", T=f"{row['temperature']:.4f}", pairs_s=f"{row['pairs_per_s']:.0f}")
            record(row)
        if out is not None and main_process and ((cfg.checkpoint_every and done % cfg.checkpoint_every == 0) or done == cfg.steps):
            _checkpoint(out, model, tokenizer, optimizer, done)
        if main_process and ((cfg.eval_every and done % cfg.eval_every == 0) or done == cfg.steps):
            model.eval()
            metrics = eval_fn(model, tokenizer)
            model.train()
            record(dict(step=done, **{k if k.startswith("val_") else f"val_{k}": v for k, v in metrics.items()}))
    bar.close()
    if log_file is not None:
        log_file.close()
    if out is not None and main_process:
        import matplotlib.pyplot as plt

        from miniclip.viz import plot_history, save_figure

        fig = plot_history(history)
        save_figure(fig, out / "history.png")
        plt.close(fig)  # saved, not shown: a notebook cell that trains should not also draw it
    model.eval()
    return TrainResult(model=model, tokenizer=tokenizer, history=history, out=out)


def _hard_negative_tokens(captions: list[str], tokenizer: Tokenizer) -> torch.Tensor:
    """[C, T]: the swapped twin of each caption's relation, or a row of -1 where a caption has none."""
    swapped = [swap_relation(c) for c in captions]
    tokens = torch.full((len(captions), tokenizer.context_length), -1, dtype=torch.long)
    idx = [i for i, s in enumerate(swapped) if s is not None]
    if idx:
        tokens[idx] = tokenizer.encode([swapped[i] for i in idx])
    return tokens


def _precision(device: torch.device):
    """(autocast context, dtype): bf16 (fp16 on older GPUs) on CUDA; fp32 on the CPU."""
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype), dtype
    return torch.autocast("cpu", enabled=False), torch.float32


def read_jsonl(path) -> list[dict]:
    """The rows of a JSON-lines file such as a run's metrics.jsonl ([] when the file does not exist)."""
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    from miniclip.fileio import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def load_or_train(cfg: TrainConfig, out, progress: bool = True, **train_kwargs) -> TrainResult:
    """Load the finished run in `out` if it was trained with exactly `cfg`; otherwise train it there.

    Notebooks call this so that a second run of a lesson takes seconds instead of minutes.
    """
    from miniclip.checkpoint import load

    out = Path(out)
    run_file, metrics_file = out / "run.json", out / "metrics.jsonl"
    if run_file.is_file() and (out / "model.safetensors").is_file():
        same = json.loads(run_file.read_text()) == json.loads(json.dumps(dataclasses.asdict(cfg) | {"world_size": 1}))
        history = read_jsonl(metrics_file)
        if same and history and history[-1].get("step") == cfg.steps:
            model, tokenizer = load(out)
            return TrainResult(model=model, tokenizer=tokenizer, history=history, out=out)
    return train(cfg, out=out, progress=progress, **train_kwargs)
