"""Zero-shot classification: turn class names into a classifier by writing them into captions.

    classifier = zeroshot_classifier(model, tokenizer, ["red circle", "blue star"], SHAPES_TEMPLATES)   # [D, K]
    logits = zeroshot_logits(model, images, classifier)                                               # [B, K]
    evaluate_zeroshot(model, tokenizer, images, labels, classnames, SHAPES_TEMPLATES)   # {"top1", "top5", ...}

Each class becomes the mean of its (unit-length) text features over several templates, renormalised: the
paper's "prompt ensembling". An image is assigned the class whose caption it matches best.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from miniclip.encode import (check_finite, encode_images, encode_texts, eval_mode, inverse_temperature, model_device,
                             prepare_images)

# Templates for the shapes world, in the phrasings of its grammar: a template never read in training only adds noise.
SHAPES_TEMPLATES = [
    "a photo of a {}.", "a {}.", "a photo of one {}.", "one {}.", "a photo of a {}", "a {}",
]
SIMPLE_TEMPLATE = "a photo of a {}."

# OpenAI's class names and 18 prompt templates for CIFAR-10 (openai/CLIP, data/prompts.md).
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR10_TEMPLATES = [
    "a photo of a {}.", "a blurry photo of a {}.", "a black and white photo of a {}.", "a low contrast photo of a {}.",
    "a high contrast photo of a {}.", "a bad photo of a {}.", "a good photo of a {}.", "a photo of a small {}.",
    "a photo of a big {}.", "a photo of the {}.", "a blurry photo of the {}.", "a black and white photo of the {}.",
    "a low contrast photo of the {}.", "a high contrast photo of the {}.", "a bad photo of the {}.",
    "a good photo of the {}.", "a photo of the small {}.", "a photo of the big {}.",
]


def check_template(template: str) -> str:
    """template unchanged, or ValueError unless it holds exactly one {} where the class name goes ("a photo of a
    {}."): without one, every class would get the same caption, and the classifier would pick class 0 every time."""
    try:
        ok = "{}" in template and template.format("x") == template.replace("{}", "x", 1)
    except (IndexError, KeyError, ValueError):  # "{} {}", "{name}", "{"
        ok = False
    if not ok:
        raise ValueError(f"each template needs exactly one {{}} where the class name goes: {template!r}")
    return template


@torch.no_grad()
def zeroshot_classifier(model, tokenizer, classnames: list[str], templates: list[str] | str = SIMPLE_TEMPLATE,
                        device=None) -> torch.Tensor:
    """K class names x T templates -> classifier [D, K] with unit-length columns (on `device`, default the model's):
    column k is the mean of the unit-length features of the templates filled with class k, renormalised."""
    if isinstance(templates, str):
        templates = [templates]
    if not classnames or not templates:
        raise ValueError("zeroshot_classifier needs at least one class name and one template")
    repeated = sorted(name for name, times in Counter(classnames).items() if times > 1)
    if repeated:  # two equal columns split the probability, and argmax always picks the first of them
        raise ValueError(f"class names given more than once: {repeated}; give each class one name")
    templates = [check_template(t) for t in templates]
    texts = [template.format(name) for name in classnames for template in templates]  # K * T captions
    features = encode_texts(model, tokenizer, texts, device=device)  # [K * T, D], each unit length
    features = features.view(len(classnames), len(templates), -1).mean(dim=1)  # [K, D]: the template ensemble
    return F.normalize(features, dim=-1).t().contiguous()  # [D, K]


@torch.no_grad()
def zeroshot_logits(model, images, classifier: torch.Tensor) -> torch.Tensor:
    """images [B, 3, H, W] (normalised) or uint8 [B, S, S, 3], classifier [D, K] -> logits [B, K] = scale * cosines,
    in one batch (for many images: encode_images, then `model.inverse_temperature() * features @ classifier`)."""
    device = model_device(model)
    with eval_mode(model):
        x = prepare_images(images, model.config.image_size, device, next(model.parameters()).dtype)
        features = check_finite(F.normalize(model.encode_image(x).float(), dim=-1), "image features")  # [B, D]
        return inverse_temperature(model) * features @ classifier.to(device, torch.float32)


def zeroshot_predict(model, images, classifier: torch.Tensor) -> torch.Tensor:
    """images (as for zeroshot_logits), classifier [D, K] -> predicted class indices, LongTensor [B]."""
    return zeroshot_logits(model, images, classifier).argmax(dim=-1)


def accuracy(logits: torch.Tensor, labels, topk=(1, 5)) -> dict:
    """logits [N, K], labels int64 [N] -> {"top1": fraction in 0..1, "top5": ...}; top-k only when K >= k, a hit
    when the true class is among the k highest logits (ties: the lower index wins)."""
    labels = torch.as_tensor(labels, device=logits.device).long()
    n, k_classes = logits.shape
    ks = [k for k in topk if k <= k_classes]
    if not ks:
        return {}
    top = logits.sort(dim=1, descending=True, stable=True).indices[:, :max(ks)]  # [N, max k], best first
    hit = top == labels[:, None]  # [N, max k]
    return {f"top{k}": (int(hit[:, :k].any(dim=1).sum()) / n if n else float("nan")) for k in ks}


@torch.no_grad()
def evaluate_zeroshot(model, tokenizer, images, labels, classnames: list[str],
                      templates: list[str] | str = SIMPLE_TEMPLATE, batch_size: int = 256, device=None) -> dict:
    """Zero-shot accuracy of `model` on images (as for encode_images) with labels int [N] into classnames.

    Returns {"top1": 0..1, "top5": 0..1 (when K >= 5), "confusion": LongTensor [K, K] (rows = true class,
    columns = predicted), "per_class": FloatTensor [K] (recall of each class, nan when absent),
    "predictions": LongTensor [N], "num_images": N}.
    """
    classifier = zeroshot_classifier(model, tokenizer, classnames, templates, device=device)  # [D, K]
    features = encode_images(model, images, batch_size=batch_size, device=device)  # [N, D]
    logits = (inverse_temperature(model) * features @ classifier.to(features.device)).cpu()  # [N, K]
    labels = torch.as_tensor(labels).cpu().long()
    K = len(classnames)
    if len(labels) != len(logits):
        raise ValueError(f"{len(logits)} images but {len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= K):
        raise ValueError(f"labels must be class indices in 0..{K - 1}")
    predictions = logits.argmax(dim=1)
    confusion = torch.bincount(labels * K + predictions, minlength=K * K).view(K, K)
    per_class = confusion.diag().float() / confusion.sum(dim=1).float()  # 0 / 0 = nan for absent classes
    return {**accuracy(logits, labels), "confusion": confusion, "per_class": per_class,
            "predictions": predictions, "num_images": len(labels)}


def load_cifar10(root, train: bool = False, download: bool = False):
    """CIFAR-10 through torchvision -> (images uint8 [N, 32, 32, 3] numpy, labels int64 [N] numpy), class i is
    CIFAR10_CLASSES[i]; 10,000 test or 50,000 train images. root: the folder of cifar-10-batches-py/ (pickles,
    which torchvision unpickles only after checking their md5 sums). Downloading needs the internet (163 MB)."""
    folder = Path(root) / "cifar-10-batches-py"
    advice = "run this in Colab, or pass download=True on a machine with internet access (163 MB)"
    if not download and not folder.is_dir():
        raise FileNotFoundError(f"CIFAR-10 not found: there is no {folder}. To get it, {advice}.")
    from torchvision.datasets import CIFAR10  # imported here: torchvision is slow to import, and only needed here
    try:
        dataset = CIFAR10(root=str(root), train=train, download=download)
    except RuntimeError as e:  # torchvision: "Dataset not found or corrupted"
        raise RuntimeError(f"CIFAR-10 under {folder} is incomplete or corrupted ({e}). Delete it and {advice}.") from e
    except OSError as e:  # no network: urllib's URLError is an OSError
        raise RuntimeError(f"could not download CIFAR-10 ({e}): is this machine offline? Run this in Colab, or on a "
                           f"machine with internet access, or copy cifar-10-batches-py/ into {root}.") from e
    images = np.ascontiguousarray(dataset.data, dtype=np.uint8)  # [N, 32, 32, 3]
    labels = np.asarray(dataset.targets, dtype=np.int64)
    if list(dataset.classes) != CIFAR10_CLASSES:
        raise RuntimeError(f"unexpected CIFAR-10 class names {dataset.classes}; expected {CIFAR10_CLASSES}")
    return images, labels

