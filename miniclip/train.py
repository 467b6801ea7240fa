"""Training: the contrastive loop, from a data source to a run directory.

    result = train(preset="shapes-tiny", data="shapes", out="runs/tiny")   # ~1 minute on a CPU
    result.history                                                         # what metrics.jsonl holds

or from a shell: `miniclip train --preset shapes-tiny --data shapes --out runs/tiny`, and on several GPUs
`torchrun --nproc_per_node=4 -m miniclip train ...`. A run directory holds

    model.safetensors, config.json, tokenizer.json   the model (miniclip.load reads it)
    train_state.safetensors                          weights, optimiser moments and step in one file, for --resume
    run.json                                         how the run was started (the TrainConfig)
    metrics.jsonl                                    one JSON object per logged step and per evaluation
    .miniclip.lock                                   only while a process trains there: one trainer per folder

(miniclip.run_folder: when a folder holds a finished run, and which folders --overwrite may empty.)
train() draws nothing: plot result.history (miniclip.course.figures.plot_history) where you want the figure.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from miniclip.checkpoint import (METRICS_FILE, TOKENIZER_FILE, TRAIN_STATE_FILE, MetricsLog, atomic_write_json, load,
                                 load_config, load_tokenizer, load_train_state, read_jsonl, save, save_train_state)
from miniclip.config import TrainConfig
from miniclip.data.batches import Batches, hard_negative_tokens
from miniclip.data.sources import load_pairs
from miniclip.device import precision, process_device, seed_everything, start_processes
from miniclip.evaluate import evaluate_suite
from miniclip.locks import follow_writer, run_lock
from miniclip.loss import distributed_clip_loss
from miniclip.model import MiniCLIP
from miniclip.run_folder import (RUN_FILE, check_run_dir, evaluated, holds_files, prepare_run_dir, run_is_finished,
                                 run_record, same_recipe)
from miniclip.tokenizer import Tokenizer


@dataclass
class TrainResult:
    """What train() returns: the model (eval mode), its tokenizer, the logged rows and the run folder (or None)."""

    model: MiniCLIP
    tokenizer: Tokenizer
    history: list[dict]
    out: Path | None


# ------------------------------------------------------------------------------------------------ the recipe

def lr_at(step: int, cfg: TrainConfig) -> float:
    """The learning rate at `step`: linear warmup to cfg.lr, then a cosine decay to 0 at cfg.steps."""
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
    """AdamW over param_groups(model); the fused kernel (one pass over all tensors: ~5% faster shapes-tiny steps)
    on the CPU and CUDA, which have it from torch 2.4 on, the plain loop on other devices."""
    fused = next(model.parameters()).device.type in ("cpu", "cuda")
    return torch.optim.AdamW(param_groups(model, cfg.weight_decay, cfg.text_lr_scale), lr=cfg.lr, betas=cfg.betas,
                             eps=cfg.eps, fused=fused)


class _Features(nn.Module):
    """One forward() for both towers, so that DDP (which hooks forward) sees the whole pass."""

    def __init__(self, model: MiniCLIP):
        super().__init__()
        self.model = model

    def forward(self, images, tokens):
        image_features = F.normalize(self.model.encode_image(images), dim=-1)  # [n, D]
        text_features = F.normalize(self.model.encode_text(tokens), dim=-1)  # [n + m, D]
        return image_features, text_features, self.model.inverse_temperature()


def train_step(net: nn.Module, images, tokens, negatives=None) -> torch.Tensor:
    """The loss of one batch: images [n,3,H,W], tokens [n,T], optional hard-negative tokens [m,T].

    net is _Features(model), possibly wrapped in DDP; with several processes the negatives are the global batch.
    """
    n = tokens.shape[0]
    all_tokens = tokens if negatives is None else torch.cat([tokens, negatives])  # [n + m, T]
    image_features, text_features, inverse_temperature = net(images, all_tokens)
    extra = text_features[n:] if negatives is not None else None
    return distributed_clip_loss(image_features, text_features[:n], inverse_temperature, extra)


# ------------------------------------------------------------------------------------------------ before the loop

def _evaluates_at(step: int, cfg: TrainConfig) -> bool:
    """Whether training evaluates after `step` steps: every cfg.eval_every steps, and after the last."""
    return bool(cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.steps


def _check_data(cfg: TrainConfig, data, image_size: int) -> None:
    """A cache of another image size than the preset's is one clear error, before anything is written."""
    size = data.images.shape[1]
    if size != image_size:
        raise ValueError(f"--data {cfg.data}: its images are {size} px, but --preset {cfg.preset} takes {image_size} "
                         f"px; build a cache with `miniclip prepare ... --size {image_size}`, or choose a preset "
                         f"of {size} px")


def _load_base(cfg: TrainConfig, model_cfg) -> tuple[MiniCLIP, Tokenizer]:
    """The model and tokenizer of cfg.init_from, checked to be of cfg's preset (same shapes, same context)."""
    try:
        model, tokenizer = load(cfg.init_from)
    except FileNotFoundError as e:  # missing or damaged: say which flag pointed there
        raise FileNotFoundError(f"--init-from {cfg.init_from}: {e}") from e
    except (OSError, ValueError) as e:
        raise ValueError(f"--init-from {cfg.init_from}: {e}") from e
    if tokenizer is None:
        raise FileNotFoundError(f"--init-from {cfg.init_from}: the run holds no {TOKENIZER_FILE}")
    theirs, ours = model.config.to_dict(), model_cfg.to_dict()
    differ = sorted(k for k in ours if k not in ("vocab_size", "eot_token_id") and theirs[k] != ours[k])
    if differ:
        raise ValueError(f"--init-from {cfg.init_from}: its model differs from --preset {cfg.preset} in {differ}; "
                         "start from a run of the same preset")
    return model, tokenizer


# ------------------------------------------------------------------------------------------------ the loop

def train(cfg: TrainConfig | None = None, *, out=None, resume: bool = False, overwrite: bool = False,
          progress: bool = True, eval_fn=None, **overrides) -> TrainResult:
    """Train a MiniCLIP; returns TrainResult(model, tokenizer, history, out).

    cfg: a TrainConfig, or keywords such as preset="shapes-tiny", steps=300 (a preset's recipe is filled in).
    out: the run directory (None: nothing is written); it must be empty or missing unless resume (continue its
    last checkpoint) or overwrite (delete it first). eval_fn(model, tokenizer) -> dict of metrics, called every
    cfg.eval_every steps and at the end (default: evaluate_suite on held-out data of the same source, at cfg's
    eval_images and eval_per_class; a custom eval_fn should read its sizes from cfg too, since run.json records them).
    """
    cfg = TrainConfig.for_preset(overrides.pop("preset", "shapes-tiny"), **overrides) if cfg is None else \
        dataclasses.replace(cfg, **overrides)
    if resume and out is None:
        raise ValueError("resume=True continues the run in a folder: pass out=, that folder")
    rank, world = start_processes()
    if cfg.batch_size % world:
        raise ValueError(f"--batch-size {cfg.batch_size} must be divisible by the number of processes ({world})")
    device = process_device(cfg.device, world)
    out, main_process = (Path(out) if out is not None else None), rank == 0
    made = out is not None and main_process and not out.exists()
    if out is not None and main_process:
        check_run_dir(cfg, out, resume, overwrite)
    try:
        with run_lock(out) if out is not None and main_process else contextlib.nullcontext():  # one trainer per folder
            return _train(cfg, out, resume, progress, eval_fn, device, rank, world)
    except BaseException:
        if made and out.is_dir() and not any(out.iterdir()):  # refused before it wrote anything: leave no trace
            out.rmdir()
        raise


def _train(cfg: TrainConfig, out: Path | None, resume: bool, progress: bool, eval_fn, device, rank: int,
           world: int) -> TrainResult:
    """train() once the run folder is checked and locked: data, model, then the loop."""
    main_process = rank == 0
    seed_everything(cfg.seed)

    model_cfg = cfg.model_config()
    # before the data, so that a wrong start fails at once; a resumed run has its own weights and tokenizer
    base = _load_base(cfg, model_cfg) if cfg.init_from and not resume else None
    data = load_pairs(cfg.data, "train", image_size=model_cfg.image_size, n=cfg.num_images or None, seed=cfg.seed,
                      **cfg.world_options())
    _check_data(cfg, data, model_cfg.image_size)
    # a cache's held-out images, read once for every evaluation: when missing, said now, not after training
    held_out = load_pairs(cfg.data, "val") if eval_fn is None and cfg.data != "shapes" else cfg.data
    if out is not None and main_process:
        prepare_run_dir(out, resume)
    if resume:
        tokenizer = load_tokenizer(out / TOKENIZER_FILE)
    else:
        tokenizer = base[1] if base else Tokenizer.train(data.captions, model_cfg.vocab_size, model_cfg.context_length)
    # the token table: a fine-tune's is its base's, a resumed run's its own, else the preset's (or the tokenizer's)
    given = base[0].config if base else load_config(out) if resume else None
    model_cfg.vocab_size = given.vocab_size if given else max(model_cfg.vocab_size, tokenizer.vocab_size)
    model_cfg.eot_token_id = tokenizer.end_id
    tokens = tokenizer.encode(data.captions)  # [C, T], every caption once
    negatives = hard_negative_tokens(data.captions, tokenizer) if cfg.hard_negatives else None
    batches = Batches(data, tokens, cfg.batch_size, device=device, seed=cfg.seed, augment=cfg.augment)

    torch.manual_seed(cfg.seed)
    model = MiniCLIP(model_cfg)
    if base:
        model.load_state_dict(base[0].state_dict())
    model = model.to(device)
    optimizer = make_optimizer(model, cfg)
    start = load_train_state(model, optimizer, out / TRAIN_STATE_FILE, device=str(device)) if resume else 0
    if start > cfg.steps:  # run.json would say fewer steps than the weights have had
        raise ValueError(f"--resume with --steps {cfg.steps}: the run in {out} is already at step {start}; give "
                         f"--steps {start} or more")
    if resume and start == cfg.steps and main_process:
        warnings.warn(f"--resume: the run in {out} is already at its last step ({start}), so no step is trained; "
                      "give a larger --steps to train it further")
    history = [r for r in read_jsonl(out / METRICS_FILE) if r.get("step", 0) <= start] if resume else []
    net = _Features(model)
    if world > 1:
        net = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    net = torch.compile(net) if cfg.compile else net
    eval_fn = eval_fn or (lambda m, t: evaluate_suite(m, t, held_out, device=device, seed=cfg.seed,
                                                      num_images=cfg.eval_images,
                                                      zeroshot_per_class=cfg.eval_per_class))
    log = MetricsLog(out / METRICS_FILE if out is not None and main_process else None, history)
    if out is not None and main_process:
        atomic_write_json(out / RUN_FILE, run_record(cfg, world))
        if not resume:
            _checkpoint(out, model, tokenizer, optimizer, 0)
    if resume and main_process and start and _evaluates_at(start, cfg) and not evaluated(history, start):
        _evaluate(model, tokenizer, eval_fn, log, start)  # the run was stopped after its checkpoint, before this

    autocast, dtype = precision(device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)  # fp16 only: loss scaling
    n_local, lo = cfg.batch_size // world, rank * (cfg.batch_size // world)
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="training",
               disable=not (progress and main_process))
    clock, pairs_since = time.perf_counter(), 0
    model.train()
    for step in bar:
        images, batch_tokens, _ = batches.get(step)
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
            log.close()
            kept = f" The last good checkpoint is kept in {out} (--resume, perhaps with a lower --lr)." if out else ""
            raise FloatingPointError(f"the loss became {loss.item()} at step {step}; stopping.{kept}")
        _optimizer_step(model, optimizer, loss, scaler, cfg.grad_clip)
        pairs_since, done = pairs_since + cfg.batch_size, step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            now = time.perf_counter()
            row = dict(step=done, loss=loss.item(), temperature=1 / model.inverse_temperature().item(),
                       logit_scale=model.logit_scale.item(), lr=lr, pairs_per_s=pairs_since / (now - clock))
            clock, pairs_since = now, 0
            bar.set_postfix(loss=f"{row['loss']:.3f}", T=f"{row['temperature']:.4f}", pairs_s=f"{row['pairs_per_s']:.0f}")
            log.write(row)
        if out is not None and main_process and ((cfg.checkpoint_every and done % cfg.checkpoint_every == 0)
                                                 or done == cfg.steps):
            _checkpoint(out, model, tokenizer, optimizer, done)
        if main_process and _evaluates_at(done, cfg):
            _evaluate(model, tokenizer, eval_fn, log, done)
    bar.close()
    log.close()
    return TrainResult(model=model.eval(), tokenizer=tokenizer, history=log.rows, out=out)


def _optimizer_step(model, optimizer, loss, scaler, grad_clip: float) -> None:
    """Backward, clip the gradient norm to grad_clip, step (scaler: the fp16 GradScaler, a no-op when disabled)."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    model.clamp_logit_scale()  # the temperature never goes below 1/100


def _evaluate(model, tokenizer, eval_fn, log: MetricsLog, step: int) -> None:
    """eval_fn(model, tokenizer) in eval mode, logged as one row of val_* metrics at `step`."""
    model.eval()
    metrics = eval_fn(model, tokenizer)
    model.train()
    log.write(dict(step=step, **{k if k.startswith("val_") else f"val_{k}": v for k, v in metrics.items()}))


def _checkpoint(out: Path, model, tokenizer, optimizer, step: int) -> None:
    """The model files first, then train_state.safetensors: the one file --resume reads, renamed into place last."""
    save(model, tokenizer, out, step=step)
    save_train_state(model, optimizer, step, out / TRAIN_STATE_FILE)


def load_or_train(cfg: TrainConfig, out, progress: bool = True, **train_kwargs) -> TrainResult:
    """Load the finished run in `out` if it was trained with exactly `cfg`; otherwise train it there.

    An interrupted run of the same cfg is resumed; a run of another recipe in `out` is replaced (this is for
    the lessons' own run folders, so that a second run of a notebook takes seconds instead of minutes). A run
    that another process trains right now (another notebook) is waited for, then loaded.
    """
    out = Path(out)
    follow_writer(out, cfg.steps, progress)
    if run_is_finished(cfg, out):
        try:
            model, tokenizer = load(out)
        except ValueError as e:  # damaged: never deleted for the user (a flaky network drive may read it next time)
            raise ValueError(f"{e} To train this run again instead, delete the folder {out}.") from e
        return TrainResult(model=model, tokenizer=tokenizer, history=read_jsonl(out / METRICS_FILE), out=out)
    resume = same_recipe(out, cfg) and (out / TRAIN_STATE_FILE).is_file()
    if holds_files(out) and not resume:
        print(f"replacing the run in {out}: another recipe (or another start), or it did not finish")
    return train(cfg, out=out, progress=progress, resume=resume, overwrite=not resume, **train_kwargs)
