"""Limitations 5 and 9: how much data CLIP needs. Deep learning is data-hungry (CLIP saw 12.8 billion images in
training), and a few labelled examples can do worse than none (few-shot probes below zero-shot).

    history_curve(run.history, batch_size)     # one run's zero-shot accuracy against pairs seen
    data_efficiency({300: acc, 3000: acc})     # runs on more or fewer distinct images (DATA_EFFICIENCY)
    few_shot(model, tokenizer)                 # k-shot linear probes against the zero-shot classifier
"""
from __future__ import annotations

import torch

from miniclip.data import shapes
from miniclip.data.shapes import class_names
from miniclip.encode import encode_images
from miniclip.probes.linear import few_shot_curve
from miniclip.probes.scoring import average, classify, probe_data_seed
from miniclip.zeroshot import SHAPES_TEMPLATES, zeroshot_classifier


def history_curve(history: list[dict], batch_size: int, key: str = "val_zeroshot_top1") -> dict:
    """A run's periodic evaluations as a learning curve: {"pairs_seen": [...], "accuracy": [...]}.

    history: TrainResult.history (rows with "step" and, at evaluations, key); pairs seen = step x batch_size.
    RECIPES["base"] evaluates every 500 steps, so its history is a learning curve at little extra cost.
    """
    rows = [r for r in history if key in r]
    return {"pairs_seen": [int(r["step"]) * batch_size for r in rows], "accuracy": [float(r[key]) for r in rows]}


def first_reaching(amounts: list[int], accuracy: list[float], thresholds) -> dict:
    """{str(threshold): the first of the (ascending) amounts whose accuracy reached it, or None}."""
    return {str(t): next((n for n, a in zip(amounts, accuracy) if a >= t), None) for t in thresholds}


def learning_curve(history: list[dict] | None, batch_size: int | None, thresholds=(0.5, 0.8, 0.9)) -> dict:
    """Limitation 5 for one run: its periodic zero-shot evaluations as a curve (history_curve), and the pairs it
    took to reach each threshold; a note pointing to data_efficiency when the run has no such evaluations."""
    chance = 1 / len(class_names())
    curve = history_curve(history, batch_size) if history and batch_size else {"pairs_seen": []}
    if not curve["pairs_seen"]:
        return {"note": "needs a run with periodic zero-shot evaluations (eval_every), or runs on different amounts "
                        "of data: train DATA_EFFICIENCY's runs and pass their accuracies to data_efficiency()",
                "chance": chance}
    reach = first_reaching(curve["pairs_seen"], curve["accuracy"], thresholds)
    return {**curve, "pairs_to_reach": reach, "chance": chance}


def data_efficiency(results: dict, thresholds=(0.5, 0.8, 0.9)) -> dict:
    """Accuracy against the amount of training data, from runs the caller trained (DATA_EFFICIENCY says how).

    results: {number of training pairs (or images): accuracy 0..1, or a TrainResult.history whose last
    "val_zeroshot_top1" is used}. Returns {"pairs": sorted sizes, "accuracy": [...], "pairs_to_reach":
    {"0.9": the least size that reached it, or None}}. The paper: CLIP needs hundreds of millions of pairs for
    what a child learns from a handful of examples; compare the few-shot curve's labelled examples (9_few_shot).
    """
    def value(v):
        if isinstance(v, (list, tuple)):
            return [float(r["val_zeroshot_top1"]) for r in v if "val_zeroshot_top1" in r][-1]
        return float(v)

    pairs = [int(p) for p in sorted(results)]
    accuracy = [value(results[p]) for p in pairs]
    return {"pairs": pairs, "accuracy": accuracy, "pairs_to_reach": first_reaching(pairs, accuracy, thresholds)}


def few_shot(model, tokenizer, shots=(1, 2, 4, 8, 16), draws: int = 3, per_class: int = 20, seed: int = 0) -> dict:
    """Linear probes on frozen features with k labelled images per class against the zero-shot classifier.

    The paper: zero-shot CLIP matches a 4-shot linear probe on the same features, and 1- and 2-shot probes are
    worse than zero-shot - unlike humans, who gain a lot from one example. It suggests using the zero-shot
    classifier as a prior; zero_shot_init is such a probe (started at, and pulled towards, the zero-shot weights).
    shots: the values of k (each probe draws its k examples per class from max(shots) per class); draws: random
    k-shot subsets per k; per_class: test images per class.
    Returns {"zero_shot": acc, "linear_probe": {k: mean acc}, "linear_probe_std": {k: std over draws},
    "zero_shot_init": {k: mean acc}, "k_matching_zero_shot": the least k whose probe reaches zero-shot (or None)}.
    """
    size = model.config.image_size
    train, train_labels = shapes.single_object_set(max(shots), seed=probe_data_seed(seed, 10), image_size=size)
    test, test_labels = shapes.single_object_set(per_class, seed=probe_data_seed(seed, 11), image_size=size)
    train_features, test_features = encode_images(model, train.images).cpu(), encode_images(model, test.images).cpu()
    classifier = zeroshot_classifier(model, tokenizer, class_names(), SHAPES_TEMPLATES).cpu()
    zero_shot = average(classify(test_features, classifier) == torch.as_tensor(test_labels))
    ks = list(shots)
    seeds = [seed * 100 + s for s in range(draws)]
    plain = few_shot_curve(train_features, train_labels, test_features, test_labels, ks=ks, seeds=seeds)
    # init.t() must be contiguous: fit_logistic_regression clones it into the weights that L-BFGS flattens
    init = classifier.t().contiguous().t()  # [D, K], stored column by column
    prior = few_shot_curve(train_features, train_labels, test_features, test_labels, ks=ks, seeds=seeds,
                           init=init, init_inverse_temperature=model.inverse_temperature().item())
    matching = next((k for k in ks if plain[k][0] >= zero_shot), None)
    return {
        "zero_shot": zero_shot,
        "linear_probe": {str(k): plain[k][0] for k in ks},
        "linear_probe_std": {str(k): plain[k][1] for k in ks},
        "zero_shot_init": {str(k): prior[k][0] for k in ks},
        "k_matching_zero_shot": matching,
        "n_seeds": len(seeds),
        "chance": 1 / len(class_names()),
    }
