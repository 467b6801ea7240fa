"""Limitations 1 and 3: zero-shot CLIP is below supervised models on their own task, generalises poorly to truly
out-of-distribution data, and reads the words written on an image (the typographic attack).

    supervised_vs_zeroshot(model, tokenizer)     # zero-shot vs linear probe vs supervised CNN, normal images
    distribution_shift(model, tokenizer)         # the same three on every rendition (sketch, texture, ...)
    typographic(model, tokenizer)["flip_rate"]   # how often a written word changes the prediction
    baselines = supervised_baselines()           # TinyCNNs of several qualities, normal and shifted
    effective_robustness(shift, baselines)       # each method's distance above the baselines' trend line
"""
from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from miniclip.data import shapes
from miniclip.data.shapes import RENDITIONS, SHAPES, class_names
from miniclip.encode import encode_images
from miniclip.probes.cnn import TinyCNN, cnn_predict, labelled_shapes, train_shapes_cnn
from miniclip.probes.linear import fit_logistic_regression
from miniclip.probes.scoring import average, classify, probe_data_seed
from miniclip.zeroshot import SHAPES_TEMPLATES, zeroshot_classifier


def supervised_vs_zeroshot(model, tokenizer, per_class: int = 20, train_per_class: int = 50, cnn_steps: int = 300,
                           seed: int = 0, cnn: TinyCNN | None = None) -> dict:
    """Zero-shot top-1 against supervised classifiers trained on labelled images of the same 36 classes.

    The paper: zero-shot CLIP is competitive with a linear classifier on ResNet-50 features, but well below the
    state of the art of most tasks. Here the supervised side is (a) logistic regression on the model's own
    frozen features of `train_per_class` labelled images per class (the "linear probe") and (b) a TinyCNN
    trained on the same labelled images (`cnn_steps` steps, unless a trained `cnn` is given). Returns
    accuracies (0..1) on a held-out single-object set of `per_class` images per class.
    """
    size = model.config.image_size
    test, test_labels = shapes.single_object_set(per_class, seed=probe_data_seed(seed, 2), image_size=size)
    train_images, train_labels = labelled_shapes(train_per_class, seed, size)
    classifier = zeroshot_classifier(model, tokenizer, class_names(), SHAPES_TEMPLATES)
    test_features = encode_images(model, test.images)
    W, b = fit_logistic_regression(encode_images(model, train_images), train_labels, num_classes=len(class_names()))
    cnn = cnn if cnn is not None else train_shapes_cnn(train_per_class, cnn_steps, seed, size)
    labels = torch.as_tensor(test_labels)
    return {
        "zero_shot": average(classify(test_features, classifier) == labels),
        "linear_probe": average(((test_features.cpu().double() @ W.t() + b).argmax(dim=1) == labels)),
        "supervised_cnn": average(cnn_predict(cnn, test.images) == labels),
        "n_train_per_class": train_per_class,
        "n_test": len(labels),
        "chance": 1 / len(class_names()),
    }


def distribution_shift(model, tokenizer, per_class: int = 20, train_per_class: int = 50, cnn_steps: int = 300,
                       seed: int = 0, cnn: TinyCNN | None = None) -> dict:
    """Top-1 on the 36 classes for every rendition (normal, sketch, texture, shade, background), three ways:

      zero_shot       the model's zero-shot classifier (prompt ensemble of SHAPES_TEMPLATES)
      linear_probe    logistic regression on the model's features, fitted on normal images only
      supervised_cnn  a TinyCNN trained on the labels of the same normal images
    Each is {rendition: accuracy} on `per_class` images per class; the supervised side trains as in
    supervised_vs_zeroshot. "Effective robustness" (the paper, section 3.3) compares accuracy under shift with
    in-distribution accuracy: plot shifted against normal for each method. The paper: zero-shot CLIP is far more
    robust than supervised ImageNet models on natural shifts, yet fails on truly out-of-distribution data
    (MNIST: 88%).
    """
    size = model.config.image_size
    classifier = zeroshot_classifier(model, tokenizer, class_names(), SHAPES_TEMPLATES)
    train_images, train_labels = labelled_shapes(train_per_class, seed, size)
    W, b = fit_logistic_regression(encode_images(model, train_images), train_labels, num_classes=len(class_names()))
    cnn = cnn if cnn is not None else train_shapes_cnn(train_per_class, cnn_steps, seed, size)
    out = {"zero_shot": {}, "linear_probe": {}, "supervised_cnn": {}}
    for rendition in RENDITIONS:
        data, labels = shapes.single_object_set(per_class, seed=probe_data_seed(seed, 3), image_size=size,
                                                rendition=rendition)
        labels = torch.as_tensor(labels)
        features = encode_images(model, data.images).cpu()
        out["zero_shot"][rendition] = average(classify(features, classifier) == labels)
        out["linear_probe"][rendition] = average((features.double() @ W.t() + b).argmax(dim=1) == labels)
        out["supervised_cnn"][rendition] = average(cnn_predict(cnn, data.images) == labels)
    shifted = [r for r in RENDITIONS if r != "normal"]
    for method in ("zero_shot", "linear_probe", "supervised_cnn"):
        out[f"{method}_shifted_mean"] = average([out[method][r] for r in shifted])
    return out | {"n_per_rendition": len(labels), "chance": 1 / len(class_names())}


def typographic(model, tokenizer, per_class: int = 20, seed: int = 0, word: str = "wrong") -> dict:
    """The typographic attack: write another shape's name on the image and classify zero-shot again.

    The paper (and the follow-up "Multimodal neurons"): CLIP reads, so an apple labelled "iPod" becomes an iPod.
    The same `per_class` images per class are classified without and with the word (single_object_set keeps
    everything else equal):
      accuracy_clean, accuracy_attacked   top-1 on the 36 "colour shape" classes
      flip_rate          of the images right without the word, the share whose prediction changes with it
      follows_word_rate  the share of attacked images predicted as the written shape (chance 1/6 by shape)
    word: "wrong" (another shape, drawn per image) or "true" (the object's own shape: reading then helps).
    """
    size = model.config.image_size
    classifier = zeroshot_classifier(model, tokenizer, class_names(), SHAPES_TEMPLATES)
    clean, labels = shapes.single_object_set(per_class, seed=probe_data_seed(seed, 4), image_size=size)
    attacked, _ = shapes.single_object_set(per_class, seed=probe_data_seed(seed, 4), image_size=size, word=word)
    labels = torch.as_tensor(labels)
    before = classify(encode_images(model, clean.images), classifier)
    after = classify(encode_images(model, attacked.images), classifier)
    right = before == labels
    written = torch.tensor([SHAPES.index(a["word"]) for a in attacked.attributes])
    predicted_shape = after % len(SHAPES)  # class_names() is colour-major: index = colour * 6 + shape
    return {
        "accuracy_clean": average(right),
        "accuracy_attacked": average(after == labels),
        "flip_rate": average((after != before)[right]),
        "follows_word_rate": average(predicted_shape == written),
        "follows_word_given_flip": average((predicted_shape == written)[right & (after != before)]),
        "chance_follows_word": 1 / len(SHAPES),
        "n": len(labels),
        "chance": 1 / len(class_names()),
    }


# ----------------------------------------------------------------------------------------------
# Effective robustness (Taori et al. 2020; the paper's section 3.3 and Fig. 13)


def supervised_baselines(per_class: int = 20, train_per_class: int = 50, steps=(20, 40, 80, 160, 300, 600),
                         seed: int = 0, image_size: int = 32, progress: bool = False) -> dict:
    """Supervised models of several qualities, each measured on normal and on shifted images: the trend's points.

    One TinyCNN per entry of `steps`, all on the same labelled_shapes (a short cosine schedule leaves a CNN
    worse). The test sets are distribution_shift's (same seed and per_class), so the points compare with its
    methods. Returns {"steps", "normal", "shifted_mean" (lists, one per CNN, 0..1), "per_rendition", "chance"}.
    progress: a bar over the CNNs (seconds each on a CPU; the cost grows with the steps).
    """
    sets = {r: shapes.single_object_set(per_class, seed=probe_data_seed(seed, 3), image_size=image_size, rendition=r)
            for r in RENDITIONS}
    shifted = [r for r in RENDITIONS if r != "normal"]
    out = {"steps": list(steps), "normal": [], "shifted_mean": [], "per_rendition": []}
    for n_steps in tqdm(steps, desc="supervised baselines", disable=not progress, leave=False):
        cnn = train_shapes_cnn(train_per_class, n_steps, seed, image_size)
        accuracy = {r: average(cnn_predict(cnn, data.images).numpy() == labels) for r, (data, labels) in sets.items()}
        out["normal"].append(accuracy["normal"])
        out["shifted_mean"].append(average([accuracy[r] for r in shifted]))
        out["per_rendition"].append(accuracy)
    return out | {"chance": 1 / len(class_names())}


def logit(p, eps: float = 1e-3):
    """log(p / (1 - p)) of accuracies in 0..1, clipped to [eps, 1 - eps] so that 0% and 100% stay finite."""
    p = np.clip(np.asarray(p, dtype=np.float64), eps, 1 - eps)
    return np.log(p / (1 - p))


def fit_trend(normal, shifted) -> tuple[float, float]:
    """The least-squares line logit(shifted) = slope * logit(normal) + intercept through accuracies (0..1).

    Points that all share one normal accuracy (tiny smoke-test models) give no slope: the line is then flat.
    """
    x, y = logit(normal), logit(shifted)
    if np.ptp(x) < 1e-9:
        return 0.0, float(y.mean())
    slope, intercept = np.polyfit(x, y, deg=1)
    return float(slope), float(intercept)


def on_trend(normal, line: tuple[float, float]):
    """The shifted accuracy (0..1) the trend line predicts for a normal accuracy (0..1)."""
    slope, intercept = line
    return 1 / (1 + np.exp(-(slope * logit(normal) + intercept)))


def effective_robustness(shift: dict, baselines: dict) -> dict:
    """Each method's shifted accuracy minus what the supervised baselines' trend predicts at its normal accuracy.

    shift: distribution_shift's result; baselines: supervised_baselines's. The trend is fitted in logit-transformed
    accuracy, as Taori et al. do (a straight line on Fig. 13's logit axes); the distance is read back in accuracy
    (0..1; positive = above the line = more robust than supervised models of the same accuracy). Returns
    {"line": (slope, intercept), "r2": how much of the baselines' spread in logit(shifted) the line explains,
    "baseline_range": (min, max) normal accuracy, method: {"normal", "shifted",
    "on_trend", "effective_robustness", "extrapolated"}} for zero_shot, linear_probe and supervised_cnn;
    extrapolated says the method's normal accuracy lies outside the baselines' range.
    """
    line = fit_trend(baselines["normal"], baselines["shifted_mean"])
    low, high = min(baselines["normal"]), max(baselines["normal"])
    x, y = logit(baselines["normal"]), logit(baselines["shifted_mean"])
    residual = y - (line[0] * x + line[1])  # in logit units, where the line was fitted
    r2 = 1 - float((residual ** 2).sum() / max(((y - y.mean()) ** 2).sum(), 1e-12))
    out = {"line": line, "r2": r2, "baseline_range": (low, high)}
    for method in ("zero_shot", "linear_probe", "supervised_cnn"):
        normal, shifted = shift[method]["normal"], shift[f"{method}_shifted_mean"]
        expected = float(on_trend(normal, line))
        out[method] = {"normal": normal, "shifted": shifted, "on_trend": expected,
                       "effective_robustness": shifted - expected, "extrapolated": not low <= normal <= high}
    return out
