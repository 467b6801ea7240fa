"""The exercise checkers of lessons 1-4: a caption's row of ids, the two encoders, the loss, the training recipe.

    from miniclip.course.check_lessons_1_4 import check_clip_loss
    check_clip_loss(my_clip_loss)     # prints: clip_loss | exact   (or what the mistake looks like)

Each compares a student's function with the library's own (Tokenizer.encode, Block, clip_loss, lr_at, ...).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from miniclip.config import CLIPConfig, TrainConfig
from miniclip.course.checkers import CheckResult, diagnose
from miniclip.loss import clip_loss
from miniclip.model import Block, MiniCLIP
from miniclip.train import lr_at, param_groups


# ------------------------------------------------------------------------------- lesson 1: tokens

def check_to_context(fn: Callable, tokenizer) -> CheckResult:
    """fn(ids, context_length, start_id, end_id, pad_id) -> the row of exactly context_length ids the text tower reads.

    ids: a caption's BPE ids (no special tokens). Checked against what `tokenizer.encode` produces for the same
    captions, and on short contexts: [start] + ids cut to fit + [end] + padding; truncation must keep <end>.
    """
    L, s, e, p = tokenizer.context_length, tokenizer.start_id, tokenizer.end_id, tokenizer.pad_id
    texts = ["a red circle", "", "two blue stars above a green heart",
             " ".join(["a large purple triangle and a small orange cross"] * 8)]  # the last one must be cut
    expected = {(tuple(tokenizer.bpe_ids(t)), L): tokenizer.encode(t)[0].tolist() for t in texts}
    for ids, n in (((41, 42, 43, 44, 45, 46), 5), ((), 4), ((41, 42), 4), ((41, 42, 43), 4)):
        row = [s] + list(ids)[: n - 2] + [e]
        expected[(ids, n)] = row + [p] * (n - len(row))
    inputs = [(list(ids), n, s, e, p) for ids, n in expected]

    def ref(ids, n, s_, e_, p_):
        return expected[(tuple(ids), n)]

    def cut_after_end(ids, n, s_, e_, p_):
        row = ([s_] + list(ids) + [e_])[:n]
        return row + [p_] * (n - len(row))

    def no_start(ids, n, s_, e_, p_):
        row = list(ids)[: n - 1] + [e_]
        return row + [p_] * (n - len(row))

    def cut_one_short(ids, n, s_, e_, p_):
        row = [s_] + list(ids)[: n - 3] + [e_]
        return row + [p_] * (n - len(row))

    mistakes = {
        "you truncated after adding <end>: a long caption loses its end token, and the text tower reads its "
        "feature at <end> (keep context_length - 2 caption ids, then add <end>)": cut_after_end,
        "the row does not begin with <start>": no_start,
        "you kept one caption id too few (room for the caption is context_length - 2)": cut_one_short,
    }
    result = diagnose("to_context", fn, ref, mistakes, inputs)
    print(result)
    return result


# --------------------------------------------------------------------- lesson 2: the two encoders

def check_num_image_tokens(fn: Callable) -> CheckResult:
    """fn(image_size, patch_size) -> the length of the token sequence of the image tower: one token per patch,
    plus the class token (miniclip.CLIPConfig.num_patches + 1)."""

    def ref(s, p):
        return CLIPConfig(image_size=s, patch_size=p).num_patches + 1

    mistakes = {
        "you forgot the class token (token 0, whose output becomes the image feature)": lambda s, p: (s // p) ** 2,
        "the patches form a grid: (image_size / patch_size) patches per side, squared": lambda s, p: s // p + 1,
        "you counted pixels per patch; count patches (image_size / patch_size per side)": lambda s, p: p * p + 1,
    }
    result = diagnose("image tokens", fn, ref, mistakes, [(32, 8), (64, 8), (128, 16), (224, 32)])
    print(result)
    return result


def check_block_parameters(fn: Callable) -> CheckResult:
    """fn(width, mlp_ratio) -> the number of parameters of one Transformer block (miniclip.model.Block)."""

    def ref(w, r):
        return sum(p.numel() for p in Block(w, 4, r, "gelu").parameters())

    inputs = [(64, 4), (256, 4), (48, 2)]
    mistakes = {
        "you counted the weight matrices only (each Linear has a bias, each LayerNorm a weight and a bias)":
            lambda w, r: (4 + 2 * r) * w * w,
        "you forgot the biases of the Linear layers": lambda w, r: (4 + 2 * r) * w * w + 4 * w,
        "you forgot the two LayerNorms (a weight and a bias of `width` each)": lambda w, r: (4 + 2 * r) * w * w + (5 + r) * w,
        "the attention has four width x width maps: queries, keys, values (qkv) and the output projection":
            lambda w, r: (3 + 2 * r) * w * w + (8 + r) * w,
        "the MLP is width -> mlp_ratio * width -> width: two matrices of mlp_ratio * width^2":
            lambda w, r: 6 * w * w + 10 * w,
        "you wrote mlp_ratio = 4 into the formula; use the argument": lambda w, r: 12 * w * w + 13 * w,
    }
    result = diagnose("block parameters", fn, ref, mistakes, inputs)
    print(result)
    return result


def check_causal_mask(fn: Callable) -> CheckResult:
    """fn(T) -> bool [T, T], True where query i may attend to key j: itself and the tokens before it (j <= i)."""

    def ref(t):
        return torch.ones(t, t).tril().bool()

    mistakes = {
        "it is transposed: row i (a query) must see the columns j <= i, the tokens before it, not after":
            lambda t: torch.ones(t, t).triu().bool(),
        "each token must also see itself (the diagonal is True)": lambda t: torch.ones(t, t).tril(-1).bool(),
        "the mask is inverted: True should mean 'may attend'": lambda t: ~torch.ones(t, t).tril().bool(),
    }
    result = diagnose("causal mask", fn, ref, mistakes, [(1,), (5,), (12,)])
    print(result)
    return result


# -------------------------------------------------- lesson 3: similarity and the contrastive loss

def _logits_inputs(n_cases: int = 3) -> list:
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(n, n, generator=g) * 3,) for n in (4, 7, 16)[:n_cases]]


def check_similarity(fn: Callable) -> CheckResult:
    """fn(image_features [N, D], text_features [M, D], scale) -> logits [N, M]: scaled cosine similarities."""

    def ref(a, b, s):
        return s * F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).t()

    g = torch.Generator().manual_seed(1)
    inputs = [(torch.randn(5, 8, generator=g) * 2, torch.randn(6, 8, generator=g), 14.3),
              (torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g) * 5, 100.0)]
    mistakes = {
        "you did not normalise the features (cosine similarity divides by the lengths)":
            lambda a, b, s: s * a @ b.t(),
        "you normalised along the wrong axis (each feature *vector* must have length 1: dim=-1)":
            lambda a, b, s: s * F.normalize(a, dim=0) @ F.normalize(b, dim=0).t(),
        "the temperature is applied the wrong way (multiply by the scale 1/T, don't divide)":
            lambda a, b, s: F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).t() / s,
        "you forgot the scale (the logits are scale * cosine)":
            lambda a, b, s: F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).t(),
    }
    result = diagnose("similarity", fn, ref, mistakes, inputs)
    print(result)
    return result


def check_clip_loss(fn: Callable) -> CheckResult:
    """fn(logits_per_image [N, N]) -> scalar: the symmetric cross-entropy of CLIP."""

    def targets(logits):
        return torch.arange(logits.shape[0])

    mistakes = {
        "you kept only the image->text term (the loss is symmetric: average it with text->image)":
            lambda l: F.cross_entropy(l, targets(l)),
        "you kept only the text->image term (average it with image->text)":
            lambda l: F.cross_entropy(l.t(), targets(l)),
        "you summed the two directions instead of averaging them":
            lambda l: F.cross_entropy(l, targets(l)) + F.cross_entropy(l.t(), targets(l)),
        "the targets are not the diagonal (row i's true caption is column i: targets = arange(N))":
            lambda l: (F.cross_entropy(l, targets(l).flip(0)) + F.cross_entropy(l.t(), targets(l).flip(0))) / 2,
        "you applied softmax before cross_entropy (F.cross_entropy takes raw logits)":
            lambda l: (F.cross_entropy(l.softmax(1), targets(l)) + F.cross_entropy(l.t().softmax(1), targets(l))) / 2,
    }
    result = diagnose("clip_loss", fn, clip_loss, mistakes, _logits_inputs())
    print(result)
    return result


# ------------------------------------------------------------------ lesson 4: the training recipe

def check_lr_schedule(fn: Callable) -> CheckResult:
    """fn(step, cfg) -> the learning rate at `step`: linear warmup to cfg.lr over cfg.warmup_steps, then cosine to 0
    at cfg.steps (miniclip.train.lr_at). cfg has .lr, .warmup_steps and .steps."""

    def schedule(f):
        return lambda cfg: torch.tensor([float(f(s, cfg)) for s in range(cfg.steps + 1)], dtype=torch.float64)

    def cosine(cfg, s, start):
        progress = min(1.0, (s - start) / max(1, cfg.steps - start))
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))

    inputs = [(TrainConfig(lr=4e-3, warmup_steps=10, steps=50),), (TrainConfig(lr=1e-3, warmup_steps=3, steps=20),)]
    mistakes = {
        "the warmup is one step late: at step 0 the rate is already lr / warmup_steps, reaching lr at step "
        "warmup_steps - 1 (use step + 1)": lambda c: schedule(
            lambda s, c: c.lr * s / c.warmup_steps if s < c.warmup_steps else cosine(c, s, c.warmup_steps))(c),
        "the cosine should start after the warmup: progress = (step - warmup_steps) / (steps - warmup_steps)":
            lambda c: schedule(lambda s, c: c.lr * (s + 1) / c.warmup_steps if s < c.warmup_steps else cosine(c, s, 0))(c),
        "there is no warmup (the rate should climb linearly from lr / warmup_steps to lr first)":
            lambda c: schedule(lambda s, c: cosine(c, s, 0))(c),
        "the decay is linear; it should follow half a cosine, 0.5 * (1 + cos(pi * progress))": lambda c: schedule(
            lambda s, c: c.lr * (s + 1) / c.warmup_steps if s < c.warmup_steps
            else c.lr * (1 - min(1.0, (s - c.warmup_steps) / (c.steps - c.warmup_steps))))(c),
    }
    result = diagnose("lr schedule", schedule(fn), schedule(lr_at), mistakes, inputs)
    print(result)
    return result


def check_weight_decay(fn: Callable) -> CheckResult:
    """fn(name, parameter) -> True if AdamW should apply weight decay to this parameter of a MiniCLIP.

    Compared with the optimiser groups of miniclip.train.param_groups over every parameter of two models.
    """
    models = [MiniCLIP(CLIPConfig.preset("shapes-tiny")), MiniCLIP(CLIPConfig(stem_channels=(), vision_layers=1))]

    def ref(model):
        decayed = {id(p) for g in param_groups(model, 0.1, 1.0) if g["weight_decay"] > 0 for p in g["params"]}
        return torch.tensor([id(p) in decayed for _, p in model.named_parameters()])

    def rule(f):
        return lambda model: torch.tensor([bool(f(n, p)) for n, p in model.named_parameters()])

    mistakes = {
        "every parameter decays; decay only the weight matrices (not biases, LayerNorms, embeddings or the "
        "temperature: shrinking those towards 0 changes what the model computes, not just its size)":
            rule(lambda n, p: True),
        "embedding tables (token, positional) are 2-D but are not decayed: they are lookup tables, not maps":
            rule(lambda n, p: p.ndim >= 2),
        "besides the biases, LayerNorm weights, embedding tables and the temperature are not decayed either: "
        "only weight matrices and convolution kernels":
            rule(lambda n, p: not n.endswith("bias")),
        "nothing decays; the weight matrices (and convolution kernels) should": rule(lambda n, p: False),
    }
    result = diagnose("weight decay", rule(fn), ref, mistakes, [(m,) for m in models])
    print(result)
    return result

