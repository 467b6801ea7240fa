"""Evaluation on frozen features: encoding in batches, retrieval recall@k, and linear probes.

    image_features = encode_images(model, data.images)              # [N, D], unit length
    text_features = encode_texts(model, tokenizer, data.captions)   # [C, D], unit length
    retrieval_metrics(image_features @ text_features.T, data.caption_image)   # {"i2t_r1": ..., ...} in percent

    linear_probe(train_features, train_labels, test_features, test_labels)    # accuracy, 0..1
    few_shot_curve(train_features, train_labels, test_features, test_labels)  # {k: (mean, std)}

Images may be uint8 [N, S, S, 3] (numpy, memmap or tensor: normalised here with CLIP_MEAN / CLIP_STD, one batch at
a time) or float [N, 3, H, W] tensors that are already normalised. Either is resized to the model's image size
when it differs.
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from miniclip.data import CLIP_MEAN, CLIP_STD, PairedData

PROGRESS_MIN_BATCHES = 10  # show a progress bar only for more batches than this


# ----------------------------------------------------------------------------------------------------------------
# Helpers: images to model inputs, devices, eval mode


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter."""
    return next(model.parameters()).device


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module):
    """Put the model in eval mode inside the block and restore its previous mode after (train loops call us)."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def prepare_images(images, image_size: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """A batch of images -> normalised float tensor [B, 3, image_size, image_size] on `device`.

    images: uint8 [B, S, S, 3] (numpy array, memmap or tensor; scaled to 0-1 and normalised with CLIP_MEAN and
            CLIP_STD) or a float tensor [B, 3, H, W] taken as already normalised. Resized (bilinear) when
            S or H differs from image_size; resizing is linear, so normalising before or after is the same.
    """
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8:
            raise TypeError(f"numpy images must be uint8 [B, S, S, 3], got {images.dtype}; pass floats as a torch tensor")
        images = torch.from_numpy(np.array(images))  # np.array copies: memmap slices are read-only
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError("images must be uint8 [B, S, S, 3] or a normalised float tensor [B, 3, H, W]")
    if images.dtype == torch.uint8:
        if images.shape[-1] != 3:
            raise ValueError(f"uint8 images must be [B, S, S, 3] (channels last), got {list(images.shape)}")
        x = images.to(device).permute(0, 3, 1, 2).to(dtype) / 255  # [B, 3, S, S], 0-1
        mean = torch.tensor(CLIP_MEAN, device=x.device, dtype=dtype).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD, device=x.device, dtype=dtype).view(1, 3, 1, 1)
        x = (x - mean) / std
    else:
        if images.shape[1] != 3:
            raise ValueError(f"float images must be [B, 3, H, W] (channels first), got {list(images.shape)}")
        x = images.to(device=device, dtype=dtype)
    if x.shape[-2:] != (image_size, image_size):
        downsampling = x.shape[-1] > image_size or x.shape[-2] > image_size
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=downsampling)
    return x


def _batches(n: int, batch_size: int, desc: str):
    """Start indices of the batches of n items; a tqdm bar when there are many batches."""
    starts = range(0, n, batch_size)
    return tqdm(starts, desc=desc, leave=False) if len(starts) > PROGRESS_MIN_BATCHES else starts


# ----------------------------------------------------------------------------------------------------------------
# Encoding


@torch.no_grad()
def encode_images(model, images, batch_size: int = 256, device=None) -> torch.Tensor:
    """images (uint8 [N, S, S, 3] or normalised float [N, 3, H, W]) -> unit-length features [N, D] on `device`.

    device: where to compute (default: the model's device; the model is moved there if needed).
    """
    device = torch.device(device) if device is not None else model_device(model)
    model.to(device)
    dtype = next(model.parameters()).dtype
    image_size = model.config.image_size
    features = []
    with eval_mode(model):
        for i in _batches(len(images), batch_size, "images"):
            x = prepare_images(images[i:i + batch_size], image_size, device, dtype)
            features.append(F.normalize(model.encode_image(x).float(), dim=-1))
    if not features:
        return torch.zeros(0, model.config.embed_dim, device=device)
    return torch.cat(features)


def _trim_padding(tokens: torch.Tensor, eot_token_id: int | None) -> torch.Tensor:
    """tokens [B, T] -> [B, T'] without the columns after the last end token: only padding lives there.

    The text tower is causal, so the feature at each end token never sees what follows it: dropping the trailing
    padding changes nothing but the work (short captions in a 32-token context: 3-4x less).
    """
    if eot_token_id is None:
        return tokens
    is_end = tokens == eot_token_id
    if not is_end.any(dim=1).all():  # a row without an end token: leave the batch alone
        return tokens
    last = int(is_end.int().argmax(dim=1).max())  # the latest first end token over the batch
    return tokens[:, :last + 1]


@torch.no_grad()
def encode_texts(model, tokenizer, texts: list[str], batch_size: int = 1024, device=None) -> torch.Tensor:
    """C strings -> unit-length text features [C, D] on `device` (default: the model's device)."""
    device = torch.device(device) if device is not None else model_device(model)
    model.to(device)
    texts = list(texts)
    features = []
    with eval_mode(model):
        for i in _batches(len(texts), batch_size, "texts"):
            tokens = _trim_padding(tokenizer.encode(texts[i:i + batch_size]), getattr(model.config, "eot_token_id", None))
            features.append(F.normalize(model.encode_text(tokens.to(device)).float(), dim=-1))
    if not features:
        return torch.zeros(0, model.config.embed_dim, device=device)
    return torch.cat(features)


# ----------------------------------------------------------------------------------------------------------------
# Retrieval


def _ranks(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """scores [B, M], target int64 [B] -> the 0-based rank of each row's target column, best score first.

    Ties are broken by column index (a lower index ranks first), so equal scores give the same answer on every
    run and every device: rank = #(scores > s) + #(scores == s among earlier columns).
    """
    s = scores.gather(1, target[:, None])  # [B, 1], the target's own score
    columns = torch.arange(scores.shape[1], device=scores.device)
    ahead = (scores > s) | ((scores == s) & (columns[None, :] < target[:, None]))
    return ahead.sum(dim=1)


@torch.no_grad()
def retrieval_metrics(similarity, caption_image, ks=(1, 5, 10), chunk: int = 1024) -> dict:
    """Recall@k in both directions (the COCO 5k protocol), in percent (0-100).

    similarity:    [N_img, C], image-caption scores (cosines or logits), a tensor or numpy array
    caption_image: int64 [C], the image index of each caption (several captions may share one image)
    Image -> text: a hit when ANY of the image's captions is among the top k captions (images without captions
    are skipped). Text -> image: a hit when the caption's own image is among the top k images.
    Returns {"i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10"} (one pair of keys per k).
    """
    sim = torch.as_tensor(similarity)
    caption_image = torch.as_tensor(np.asarray(caption_image), dtype=torch.long, device=sim.device)
    n_img, n_cap = sim.shape
    if caption_image.shape != (n_cap,):
        raise ValueError(f"caption_image must have one entry per caption ({n_cap}), got shape {list(caption_image.shape)}")
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
    """Encode all images and captions of `data` and return retrieval_metrics (percent) plus the counts.

    Returns {"i2t_r1", ..., "t2i_r10", "num_images", "num_captions"}. The similarity matrix is
    [num_images, num_captions] floats: 0.5 GB for COCO 5k (5,000 x 25,010).
    """
    image_features = encode_images(model, data.images, batch_size=batch_size, device=device)  # [N, D]
    text_features = encode_texts(model, tokenizer, data.captions, batch_size=max(batch_size, 1024), device=device)  # [C, D]
    metrics = retrieval_metrics(image_features @ text_features.t(), data.caption_image, ks=ks)
    metrics.update(num_images=data.num_images, num_captions=len(data.captions))
    return metrics


# ----------------------------------------------------------------------------------------------------------------
# Linear probes: logistic regression on frozen features


def fit_logistic_regression(features, labels, C: float = 0.316, max_iter: int = 1000, num_classes: int | None = None,
                            init=None, init_scale: float = 100.0, device="cpu"):
    """Multinomial logistic regression with an L2 penalty, fitted with L-BFGS in float64; deterministic on the CPU.

    features [N, D], labels int64 [N] -> (W [K, D], b [K]) float64, with predictions argmax(features @ W.T + b).
    Minimises  sum_i CE(W x_i + b, y_i) + 1 / (2C) * ||W - W0||^2,  sklearn's LogisticRegression(C=C) objective
    (its penalty, too, leaves the bias out). C is the inverse strength of the penalty: small C, strong pull.

    init: optional zero-shot classifier [D, K] (zeroshot_classifier). W0 = init_scale * init.T, the zero-shot
        logits (init_scale is the model's 1 / T, model.scale()), is then both the starting point and the centre of
        the penalty: the paper's idea of using the zero-shot classifier as a prior for few-shot training. Without
        init, W0 = 0 (plain sklearn). The problem is convex, so a starting point alone would change nothing.
    device: where to fit ("cuda" helps for 50k x 512 features; the result is returned on the CPU).
    """
    x = torch.as_tensor(features).detach().to(device, torch.float64)
    y = torch.as_tensor(labels).to(device, torch.long)
    n, d = x.shape
    if num_classes is None:
        num_classes = init.shape[1] if init is not None else int(y.max()) + 1
    W0 = torch.zeros(num_classes, d, dtype=torch.float64, device=device)
    if init is not None:
        init = torch.as_tensor(init).detach().to(device, torch.float64)
        if init.shape != (d, num_classes):
            raise ValueError(f"init must be a classifier [D, K] = [{d}, {num_classes}], got {list(init.shape)}")
        W0 = init_scale * init.t()
    W = W0.clone().requires_grad_(True)
    b = torch.zeros(num_classes, dtype=torch.float64, device=device, requires_grad=True)
    # The objective divided by N: the same minimiser, and L-BFGS's tolerances do not depend on N.
    penalty = 1.0 / (2.0 * C * n)
    optimizer = torch.optim.LBFGS([W, b], lr=1.0, max_iter=max_iter, tolerance_grad=1e-9, tolerance_change=1e-12,
                                  history_size=20, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ W.t() + b, y) + penalty * (W - W0).pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return W.detach().cpu(), b.detach().cpu()


def linear_probe(train_features, train_labels, test_features, test_labels, C: float = 0.316, max_iter: int = 1000,
                 init=None, init_scale: float = 100.0, num_classes: int | None = None, device="cpu") -> float:
    """Fit logistic regression on train features [N, D] / labels [N]; return test accuracy (0..1).

    C = 0.316 is what OpenAI's README uses. init (a zero-shot classifier [D, K]) starts the probe at, and pulls
    it towards, the zero-shot solution; see fit_logistic_regression. Features should be the unit-length image
    features of encode_images, so that init gives the zero-shot logits.
    """
    if num_classes is None and init is None:
        num_classes = int(max(torch.as_tensor(train_labels).max(), torch.as_tensor(test_labels).max())) + 1
    W, b = fit_logistic_regression(train_features, train_labels, C=C, max_iter=max_iter, num_classes=num_classes,
                                   init=init, init_scale=init_scale, device=device)
    x = torch.as_tensor(test_features).detach().to("cpu", torch.float64)
    y = torch.as_tensor(test_labels).to("cpu", torch.long)
    return ((x @ W.t() + b).argmax(dim=1) == y).double().mean().item()


def k_shot_indices(labels, k: int, seed: int = 0) -> torch.Tensor:
    """k random examples of every class in labels [N] -> LongTensor [K * k], class by class, seeded.

    Raises ValueError when a class has fewer than k examples.
    """
    labels = torch.as_tensor(labels).to("cpu", torch.long)
    g = torch.Generator().manual_seed(seed)
    chosen = []
    for c in torch.unique(labels).tolist():  # sorted classes
        members = torch.nonzero(labels == c).flatten()
        if len(members) < k:
            raise ValueError(f"class {c} has only {len(members)} examples, fewer than k = {k}")
        chosen.append(members[torch.randperm(len(members), generator=g)[:k]].sort().values)
    return torch.cat(chosen)


def few_shot_curve(train_features, train_labels, test_features, test_labels, ks=(1, 2, 4, 8, 16), seeds=(0, 1, 2),
                   C: float = 0.316, max_iter: int = 1000, init=None, init_scale: float = 100.0, device="cpu") -> dict:
    """Linear-probe accuracy with k labelled examples per class -> {k: (mean, std)} over seeds (0..1).

    The std is the sample standard deviation over seeds (0 for a single seed). Pass init (a zero-shot
    classifier [D, K]) for probes that start from, and are pulled towards, the zero-shot solution.
    """
    train_features = torch.as_tensor(train_features)
    train_labels = torch.as_tensor(train_labels)
    num_classes = init.shape[1] if init is not None else int(
        max(train_labels.max(), torch.as_tensor(test_labels).max())) + 1
    curve = {}
    for k in ks:
        accs = []
        for seed in seeds:
            idx = k_shot_indices(train_labels, k, seed)
            accs.append(linear_probe(train_features[idx], train_labels[idx], test_features, test_labels, C=C,
                                     max_iter=max_iter, init=init, init_scale=init_scale, num_classes=num_classes,
                                     device=device))
        accs = np.array(accs)
        curve[k] = (float(accs.mean()), float(accs.std(ddof=1)) if len(accs) > 1 else 0.0)
    return curve


# ----------------------------------------------------------------------------------------------------------------
# The suite that training and `miniclip eval` run


@torch.no_grad()
def contrastive_loss(image_features: torch.Tensor, text_features: torch.Tensor, caption_image, scale,
                     batch_size: int = 256) -> float:
    """The CLIP loss (nats) on held-out pairs: each image with its first caption, in batches of batch_size pairs.

    image_features [N, D] and text_features [C, D] unit length, caption_image int64 [C]. The loss grows with the
    batch size (ln(batch) for a guessing model), so compare it only at equal batch sizes. A batch is consecutive
    images with one caption each, so two captions of one image never meet in a batch.
    """
    from miniclip.loss import clip_loss

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
        total += clip_loss(scale * img @ txt.t()).item() * len(idx)
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
    from miniclip.data import SPLIT_SEED_OFFSET, load_pairs

    image_size = model.config.image_size
    if isinstance(data, PairedData):
        pairs = data
    elif data == "shapes":
        pairs = load_pairs("shapes", split, image_size=image_size, n=num_images, seed=seed)
    else:
        pairs = load_pairs(str(data), split)
    image_features = encode_images(model, pairs.images, batch_size=batch_size, device=device)  # [N, D]
    text_features = encode_texts(model, tokenizer, pairs.captions, device=device)  # [C, D]
    metrics = retrieval_metrics(image_features @ text_features.t(), pairs.caption_image)
    metrics["loss"] = contrastive_loss(image_features, text_features, pairs.caption_image,
                                       model.scale().float().to(image_features.device), batch_size)
    metrics.update(num_images=pairs.num_images, num_captions=len(pairs.captions))
    if isinstance(data, str) and data == "shapes" and zeroshot_per_class > 0:
        from miniclip.data import shapes
        from miniclip.zeroshot import SHAPES_TEMPLATES, evaluate_zeroshot

        images, labels = shapes.single_object_set(zeroshot_per_class, seed=seed + SPLIT_SEED_OFFSET[split],
                                                  image_size=image_size)
        zs = evaluate_zeroshot(model, tokenizer, images.images, labels, shapes.class_names(), SHAPES_TEMPLATES,
                               batch_size=batch_size, device=device)
        metrics.update(zeroshot_top1=zs["top1"], zeroshot_top5=zs["top5"])
    return metrics
