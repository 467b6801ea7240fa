"""Training the three objectives of the paper's Fig. 2 on the same data and reading their zero-shot learning curves.

    cfg = TrainConfig.for_preset("shapes-tiny", steps=400, batch_size=128)
    run = train_objective("captioner", cfg, out="runs/laptop/experiments/captioner", eval_every=50)
    run.curve        # {"pairs_seen": [6400, 12800, ...], "accuracy": [0.05, 0.11, ...]}

"contrastive" is miniclip.train.train itself (through load_or_train); "bag of words" and "captioner" (the models of
miniclip.course.objectives) train in a loop of the same recipe: the same data, tokenizer, batches, AdamW groups,
learning-rate schedule and gradient clipping. All three are scored on the same held-out single-object images.
A finished run is kept in its folder (run.json says how it was trained) and loaded from there the next time.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from miniclip.checkpoint import atomic_write_json, atomic_write_text, load_tensors, load_tokenizer, save_tensors
from miniclip.config import TrainConfig
from miniclip.course.objectives import BagOfWords, Captioner, bow_targets, word_vocabulary
from miniclip.data import normalise, shapes
from miniclip.data.batches import Batches
from miniclip.data.sources import SPLIT_SEED_OFFSET, load_pairs
from miniclip.device import pick_device, seed_everything
from miniclip.encode import eval_mode
from miniclip.tokenizer import Tokenizer
from miniclip.run_folder import run_is_finished
from miniclip.train import load_or_train, lr_at, make_optimizer
from miniclip.zeroshot import SHAPES_TEMPLATES, evaluate_zeroshot

OBJECTIVES = ("contrastive", "bag of words", "captioner")
SCORING = 2  # in a predictive run's run.json: 2 since the captioner scores "an orange star", never seen "a orange star"


@dataclass
class ObjectiveRun:
    """A trained objective: its model and tokenizer, and its zero-shot learning curve."""

    kind: str  # one of OBJECTIVES
    model: torch.nn.Module  # MiniCLIP, BagOfWords or Captioner, in eval mode
    tokenizer: Tokenizer
    curve: dict  # {"pairs_seen": [...], "accuracy": [...] (zero-shot top-1, 0..1)}


def zeroshot_set(per_class: int, image_size: int = 32):
    """The held-out zero-shot images: (uint8 [36 * per_class, S, S, 3], labels int64 [36 * per_class]), the same
    images that training's own evaluation (miniclip.evaluate.evaluate_suite) scores."""
    data, labels = shapes.single_object_set(per_class, seed=SPLIT_SEED_OFFSET["val"], image_size=image_size)
    return data.images, labels


@torch.no_grad()
def zeroshot_accuracy(kind: str, model, tokenizer: Tokenizer, images: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 zero-shot accuracy (0..1) over the 36 "colour shape" classes, each objective scored its own way:

    contrastive   the cosine of the image with each class's prompt ensemble (SHAPES_TEMPLATES), as in notebook 05
    bag of words  the sum of the log-probabilities of the class's two words, "red" + "circle"
    captioner     the log-likelihood of the class caption as training wrote it: "a red circle", "an orange star"
    """
    names = shapes.class_names()
    if kind == "contrastive":
        return evaluate_zeroshot(model, tokenizer, images, labels, names, SHAPES_TEMPLATES)["top1"]
    device = next(model.parameters()).device
    scores = []
    with eval_mode(model):
        for i in range(0, len(images), 64):
            x = normalise(torch.from_numpy(np.asarray(images[i:i + 64])), device)  # [b, 3, S, S]
            if kind == "bag of words":
                scores.append(model.class_scores(x, [name.split(" ") for name in names]).cpu())  # [b, 36]
            elif kind == "captioner":
                captions = [shapes.noun_phrase(*name.split(" ")) for name in names]  # "a red circle", "an orange star"
                tokens = tokenizer.encode(captions).to(device)  # [36, T]
                scores.append(model.class_scores(x, tokens).cpu())  # [b, 36]
            else:
                raise ValueError(f"unknown objective {kind!r}; use one of {OBJECTIVES}")
    predictions = torch.cat(scores).argmax(dim=1)  # [N]
    return float((predictions == torch.as_tensor(labels)).float().mean())


def curve_of(history: list[dict], batch_size: int) -> dict:
    """The zero-shot evaluations of a training history as {"pairs_seen": [...], "accuracy": [...]}."""
    rows = [r for r in history if "val_zeroshot_top1" in r]
    return {"pairs_seen": [int(r["step"]) * batch_size for r in rows],
            "accuracy": [float(r["val_zeroshot_top1"]) for r in rows]}


def train_objective(kind: str, cfg: TrainConfig, out, eval_every: int, per_class: int = 10,
                    progress: bool = True) -> ObjectiveRun:
    """Train (or load from `out`) one objective with recipe cfg, evaluating zero-shot every eval_every steps."""
    cfg, record = _run_config(kind, cfg, eval_every, per_class)
    images, labels = zeroshot_set(cfg.eval_per_class, cfg.model_config().image_size)
    out = Path(out)

    def evaluate(model, tokenizer):
        return {"zeroshot_top1": zeroshot_accuracy(kind, model, tokenizer, images, labels)}

    if kind == "contrastive":  # miniclip.train's run; its run.json records the set size (eval_per_class)
        result = load_or_train(cfg, out, progress=progress, eval_fn=evaluate)
        return ObjectiveRun(kind, result.model.eval(), result.tokenizer, curve_of(result.history, cfg.batch_size))
    if _saved_record(out) == record:
        return _load_predictive(kind, cfg, out)
    model, tokenizer, history = train_predictive(kind, cfg, evaluate, progress)
    out.mkdir(parents=True, exist_ok=True)
    save_tensors(model.state_dict(), out / "model.safetensors")
    atomic_write_text(out / "tokenizer.json", tokenizer.to_json())
    atomic_write_json(out / "history.json", history)
    if kind == "bag of words":
        atomic_write_json(out / "vocabulary.json", model.vocabulary)
    atomic_write_json(out / "run.json", record)  # last: a folder with run.json holds a finished run
    return ObjectiveRun(kind, model.eval(), tokenizer, curve_of(history, cfg.batch_size))


def train_predictive(kind: str, cfg: TrainConfig, eval_fn, progress: bool = True):
    """The loop for "bag of words" or "captioner": (model, tokenizer, history rows of {"step", "loss"} and
    {"step", "val_zeroshot_top1"}). Data, tokenizer and batches are what miniclip.train.train builds for cfg."""
    seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    model_cfg = cfg.model_config()
    data = load_pairs(cfg.data, "train", image_size=model_cfg.image_size, n=cfg.num_images or None, seed=cfg.seed,
                      **cfg.world_options())
    tokenizer = Tokenizer.train(data.captions, model_cfg.vocab_size, model_cfg.context_length)
    model_cfg.vocab_size, model_cfg.eot_token_id = max(model_cfg.vocab_size, tokenizer.vocab_size), tokenizer.end_id
    tokens = tokenizer.encode(data.captions)  # [C, T]
    batches = Batches(data, tokens, cfg.batch_size, device=device, seed=cfg.seed)
    torch.manual_seed(cfg.seed)
    if kind == "bag of words":
        vocabulary = word_vocabulary(data.captions)
        model, targets = BagOfWords(model_cfg, vocabulary), bow_targets(data.captions, vocabulary).to(device)  # [C, V]
    else:
        model, targets = Captioner(model_cfg, pad_id=tokenizer.pad_id), None
    model = model.to(device).train()
    optimizer = make_optimizer(model, cfg)
    history = []
    for step in tqdm(range(cfg.steps), desc=kind, disable=not progress, leave=False):
        images, batch_tokens, _ = batches.get(step)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg) * group["lr_scale"]
        if targets is not None:
            loss = model.loss(images, targets[batches.caption_ids(step).to(device)])
        else:
            loss = model.loss(images, batch_tokens)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the {kind} loss became {loss.item()} at step {step}; try a lower lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            history.append({"step": done, "loss": loss.item()})
        if (cfg.eval_every and done % cfg.eval_every == 0) or done == cfg.steps:
            model.eval()
            history.append({"step": done, **{f"val_{k}": v for k, v in eval_fn(model, tokenizer).items()}})
            model.train()
    return model.eval(), tokenizer, history


def _run_config(kind: str, cfg: TrainConfig, eval_every: int, per_class: int) -> tuple[TrainConfig, dict]:
    """The recipe a run of `kind` trains with, and the run.json record of a predictive run of it."""
    if kind not in OBJECTIVES:
        raise ValueError(f"unknown objective {kind!r}; use one of {OBJECTIVES}")
    cfg = dataclasses.replace(cfg, eval_every=eval_every, eval_per_class=per_class, checkpoint_every=0)
    return cfg, {"objective": kind, "scoring": SCORING, **json.loads(json.dumps(dataclasses.asdict(cfg), default=list))}


def objective_is_finished(kind: str, cfg: TrainConfig, out, eval_every: int, per_class: int = 10) -> bool:
    """Whether `out` holds the finished run that train_objective(kind, cfg, out, eval_every, per_class) would load."""
    cfg, record = _run_config(kind, cfg, eval_every, per_class)
    if kind == "contrastive":
        return run_is_finished(cfg, out)
    return _saved_record(Path(out)) == record


def _saved_record(out: Path) -> dict | None:
    """out/run.json as a dict (None when it is missing or unreadable)."""
    try:
        return json.loads((out / "run.json").read_text())
    except (OSError, ValueError):
        return None


def _load_predictive(kind: str, cfg: TrainConfig, out: Path) -> ObjectiveRun:
    """A finished predictive run back from its folder."""
    tokenizer = load_tokenizer(out / "tokenizer.json")
    model_cfg = cfg.model_config()
    model_cfg.vocab_size, model_cfg.eot_token_id = max(model_cfg.vocab_size, tokenizer.vocab_size), tokenizer.end_id
    if kind == "bag of words":
        model = BagOfWords(model_cfg, json.loads((out / "vocabulary.json").read_text()))
    else:
        model = Captioner(model_cfg, pad_id=tokenizer.pad_id)
    model.load_state_dict(load_tensors(out / "model.safetensors")[0])
    history = json.loads((out / "history.json").read_text())
    return ObjectiveRun(kind, model.eval(), tokenizer, curve_of(history, cfg.batch_size))


def pairs_to_reach(curve: dict, threshold: float) -> int | None:
    """The first number of pairs seen at which the curve's accuracy reached threshold (None: never)."""
    return next((n for n, a in zip(curve["pairs_seen"], curve["accuracy"]) if a >= threshold), None)
