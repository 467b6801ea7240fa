"""A small scaling sweep (the paper's Fig. 9 in shape): zero-shot error against training compute.

    flops = training_flops_per_pair(cfg)              # FLOPs of one training pair, forward + backward, counted
    cfg_w = at_width(cfg, 128)                        # the same recipe with both towers 128 wide
    slope, intercept = fit_power_law(compute, error)  # log10 error = intercept + slope * log10 compute

Compute is counted, not estimated: torch's FlopCounterMode records every matrix multiply and convolution of one
training step (forward and backward) on a batch of contrastive pairs. A run's compute after n pairs is n times the
FLOPs per pair (the evaluation passes are not counted).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from miniclip.config import TrainConfig
from miniclip.loss import clip_loss
from miniclip.model import MiniCLIP


def at_width(cfg: TrainConfig, width: int) -> TrainConfig:
    """cfg with both towers and the shared embedding `width` wide (heads unchanged: width must divide by them)."""
    overrides = {**cfg.model_overrides, "vision_width": width, "text_width": width, "embed_dim": width}
    return dataclasses.replace(cfg, model_overrides=overrides)


def training_flops_per_pair(cfg: TrainConfig, batch_size: int = 16, caption_tokens: int = 10) -> float:
    """FLOPs of one (image, caption) pair in one contrastive training step: forward and backward, counted by
    torch on a batch of batch_size random pairs whose captions are caption_tokens long (<start> and <end>
    included; shapes captions have about 8-12). The loss's N x N logits make it grow slowly with the batch."""
    model_cfg = cfg.model_config()
    model = MiniCLIP(model_cfg)
    images = torch.randn(batch_size, 3, model_cfg.image_size, model_cfg.image_size)  # [B, 3, S, S]
    tokens = torch.randint(4, model_cfg.vocab_size, (batch_size, model_cfg.context_length))  # [B, T]
    tokens[:, caption_tokens - 1] = model_cfg.eot_token_id  # where the text tower reads its feature
    with FlopCounterMode(display=False) as counter:
        logits_per_image, _ = model(images, tokens)
        clip_loss(logits_per_image).backward()
    return counter.get_total_flops() / batch_size


def fit_power_law(compute, error) -> tuple[float, float]:
    """Least-squares line through (log10 compute, log10 error): (slope, intercept). error = 10^intercept *
    compute^slope; a slope of -0.1 means 10x the compute cuts the error by a factor 10^0.1 = 1.26."""
    x, y = np.log10(np.asarray(compute, dtype=float)), np.log10(np.asarray(error, dtype=float))
    if len(x) < 2 or np.ptp(x) == 0:
        raise ValueError("fit_power_law needs at least two points with different compute")
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope), float(intercept)


def frontier(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The compute-efficient frontier of (compute, error) points: those no cheaper point beats (sorted by compute)."""
    best, out = float("inf"), []
    for c, e in sorted(points):
        if e < best:
            out.append((c, e))
            best = e
    return out
