"""Evaluation: retrieval recall@k (the COCO 5k protocol), the held-out contrastive loss, and the suite of
held-out metrics that training logs and `miniclip eval` prints.

    image_features = encode_images(model, data.images)              # [N, D], unit length (miniclip.encode)
    text_features = encode_texts(model, tokenizer, data.captions)   # [C, D], unit length
    retrieval_metrics(image_features @ text_features.T, data.caption_image)   # {"i2t_r1": ..., ...} in percent
    evaluate_suite(model, tokenizer, "shapes")                      # retrieval, loss and zero-shot accuracy
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

from miniclip.data import PairedData, shapes
from miniclip.data.sources import SPLIT_SEED_OFFSET, load_pairs
from miniclip.encode import check_finite, encode_images, encode_texts, inverse_temperature
from miniclip.loss import clip_loss
from miniclip.zeroshot import SHAPES_TEMPLATES, evaluate_zeroshot

MIN_EVAL_IMAGES = 100  # an evaluation on fewer held-out images warns: one image is 1% or more of the score

# ----------------------------------------------------------------------------------------------------------------
# Retrieval


def _ranks(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """scores [B, M], target int64 [B] -> the 0-based rank of each row's target column, best score first. Ties go
    to the lower column, the same on every device: rank = #(scores > s) + #(scores == s among earlier columns)."""
    s = scores.gather(1, target[:, None])  # [B, 1], the target's own score
    columns = torch.arange(scores.shape[1], device=scores.device)
    ahead = (scores > s) | ((scores == s) & (columns[None, :] < target[:, None]))
    return ahead.sum(dim=1)


@torch.no_grad()
def retrieval_metrics(similarity, caption_image, ks=(1, 5, 10), chunk: int = 1024) -> dict:
    """Recall@k in both directions (the COCO 5k protocol), in percent: {"i2t_r1", ..., "t2i_r10"}, a pair per k.

    similarity:    [N_img, C], image-caption scores (cosines or logits), a tensor or numpy array
    caption_image: int64 [C], the image index of each caption (several captions may share one image)
    Image -> text: a hit when ANY of the image's captions is among the top k captions (images without captions
    are skipped). Text -> image: a hit when the caption's own image is among the top k images.
    """
    sim = check_finite(torch.as_tensor(similarity), "similarities")  # a NaN would rank first: a perfect recall
    caption_image = torch.as_tensor(np.asarray(caption_image), dtype=torch.long, device=sim.device)
    n_img, n_cap = sim.shape
    if caption_image.shape != (n_cap,):
        raise ValueError(f"caption_image must have one entry per caption ({n_cap}), got {list(caption_image.shape)}")
    if n_cap and (caption_image.min() < 0 or caption_image.max() >= n_img):
        raise ValueError(f"caption_image holds image indices outside 0..{n_img - 1}")

    # Image -> text. An image's best-ranked caption is its highest-scoring one (the first of equals), so its rank
    # is the rank of the whole set of captions: one rank per image, computed a chunk of rows at a time.
    i2t_ranks = []
    for r in range(0, n_img, chunk):
        rows = sim[r:r + chunk]  # [b, C]
        own = caption_image[None, :] == torch.arange(r, r + len(rows), device=sim.device)[:, None]  # [b, C]
        masked = rows.masked_fill(~own, float("-inf"))
        best = masked.argmax(dim=1)  # [b]: the first caption of maximal score among the image's own
        ranks = _ranks(rows, best)
        i2t_ranks.append(ranks[own.any(dim=1)])  # skip images without captions
    i2t_ranks = torch.cat(i2t_ranks) if i2t_ranks else torch.zeros(0, dtype=torch.long)

    # Text -> image: each caption has exactly one right image.
    t2i_ranks = torch.cat([_ranks(sim[:, c:c + chunk].t(), caption_image[c:c + chunk])
                           for c in range(0, n_cap, chunk)]) if n_cap else torch.zeros(0, dtype=torch.long)

    def recall(ranks, k):
        return 100.0 * int((ranks < k).sum()) / len(ranks) if len(ranks) else float("nan")

    metrics = {f"i2t_r{k}": recall(i2t_ranks, k) for k in ks}
    metrics.update({f"t2i_r{k}": recall(t2i_ranks, k) for k in ks})
    return metrics


def evaluate_retrieval(model, tokenizer, data: PairedData, batch_size: int = 256, device=None, ks=(1, 5, 10)) -> dict:
    """retrieval_metrics (percent) of all images and captions of `data`, plus "num_images" and "num_captions".
    The similarity matrix is [num_images, num_captions] floats: 0.5 GB for COCO 5k (5,000 x 25,010)."""
    image_features = encode_images(model, data.images, batch_size=batch_size, device=device)  # [N, D]
    text_features = encode_texts(model, tokenizer, data.captions, max(batch_size, 1024), device)  # [C, D]
    metrics = retrieval_metrics(image_features @ text_features.t(), data.caption_image, ks=ks)
    metrics.update(num_images=data.num_images, num_captions=len(data.captions))
    return metrics


# ----------------------------------------------------------------------------------------------------------------
# The suite that training and `miniclip eval` run


@torch.no_grad()
def contrastive_loss(image_features: torch.Tensor, text_features: torch.Tensor, caption_image, inverse_temperature,
                     batch_size: int = 256) -> float:
    """The CLIP loss (nats) on held-out pairs: each image with its first caption, in batches of batch_size pairs.

    image_features [N, D] and text_features [C, D] unit length, caption_image int64 [C]. The loss grows with the
    batch size (ln(batch) for a guessing model): compare it only at equal batch sizes.
    """
    caption_image = torch.as_tensor(np.asarray(caption_image), dtype=torch.long)
    first = torch.full((len(image_features),), -1, dtype=torch.long)
    first.scatter_reduce_(0, caption_image, torch.arange(len(caption_image)), reduce="amin", include_self=False)
    has = torch.nonzero(first >= 0).flatten()  # images that have a caption
    total, pairs = 0.0, 0
    for i in range(0, len(has), batch_size):
        idx = has[i:i + batch_size]
        if len(idx) < 2:  # one pair has nothing to be told apart from: its loss is 0
            continue
        img = image_features[idx.to(image_features.device)]
        txt = text_features[first[idx].to(text_features.device)]
        total += clip_loss(inverse_temperature * img @ txt.t()).item() * len(idx)
        pairs += len(idx)
    return total / pairs if pairs else float("nan")


def evaluate_suite(model, tokenizer, data="shapes", device=None, seed: int = 0, split: str = "val",
                   num_images: int = 1000, zeroshot_per_class: int = 20, batch_size: int = 256) -> dict:
    """The held-out metrics that training logs (as val_*) and `miniclip eval` prints.

    data: "shapes" (num_images generated held-out scenes), a cache directory (its `split`), or a PairedData.
    Returns retrieval recall@1/5/10 in percent (i2t_r1 ... t2i_r10), "loss" (the contrastive loss of batches of
    batch_size held-out pairs, nats), num_images, num_captions and, for the shapes world, "zeroshot_top1" and
    "zeroshot_top5" (0..1) on zeroshot_per_class single-object images of each of the 36 classes.
    """
    if num_images < 1 or zeroshot_per_class < 0:
        raise ValueError(f"evaluate_suite needs num_images >= 1 and zeroshot_per_class >= 0, got {num_images} and "
                         f"{zeroshot_per_class}")
    image_size = model.config.image_size
    if isinstance(data, PairedData):
        pairs = data
    elif data == "shapes":
        pairs = load_pairs("shapes", split, image_size=image_size, n=num_images, seed=seed)
    else:
        pairs = load_pairs(str(data), split)
    if pairs.num_images < MIN_EVAL_IMAGES:
        warnings.warn(f"evaluating on only {pairs.num_images} held-out images (fewer than {MIN_EVAL_IMAGES}): recall "
                      "and accuracy this noisy say little; give the cache a val split or more images", stacklevel=2)
    image_features = encode_images(model, pairs.images, batch_size=batch_size, device=device)  # [N, D]
    text_features = encode_texts(model, tokenizer, pairs.captions, device=device)  # [C, D]
    metrics = retrieval_metrics(image_features @ text_features.t(), pairs.caption_image)
    metrics["loss"] = contrastive_loss(image_features, text_features, pairs.caption_image,
                                       inverse_temperature(model).to(image_features.device), batch_size)
    metrics.update(num_images=pairs.num_images, num_captions=len(pairs.captions))
    if isinstance(data, str) and data == "shapes" and zeroshot_per_class > 0:
        images, labels = shapes.single_object_set(zeroshot_per_class, seed=seed + SPLIT_SEED_OFFSET[split],
                                                  image_size=image_size)
        zs = evaluate_zeroshot(model, tokenizer, images.images, labels, shapes.class_names(), SHAPES_TEMPLATES,
                               batch_size=batch_size, device=device)
        metrics.update(zeroshot_top1=zs["top1"], zeroshot_top5=zs["top5"])
    return metrics
