"""Features of a trained model: images and captions to unit-length vectors, in batches.

    image_features = encode_images(model, data.images)              # [N, D], unit length
    text_features = encode_texts(model, tokenizer, data.captions)   # [C, D], unit length

Images are uint8 [N, S, S, 3] (numpy, memmap or tensor) or normalised float tensors [N, 3, H, W], resized to the
model's image size when it differs. Retrieval, zero-shot classification and the probes all start here, so this is
where a broken model (NaN or infinite features) stops them with an error instead of a meaningless score.
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from miniclip.data import normalise

PROGRESS_MIN_BATCHES = 10  # show a progress bar only for more batches than this


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

    images: uint8 [B, S, S, 3] (numpy array, memmap or tensor; normalised by miniclip.data.normalise) or a float
    tensor [B, 3, H, W] taken as already normalised. Resized (bilinear) when S or H differs from image_size.
    """
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8:
            raise TypeError(f"numpy images must be uint8 [B, S, S, 3], got {images.dtype}; pass floats as a tensor")
    elif not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError("images must be uint8 [B, S, S, 3] or a normalised float tensor [B, 3, H, W]")
    if isinstance(images, np.ndarray) or images.dtype == torch.uint8:
        x = normalise(images, device, dtype)  # [B, 3, S, S]
    else:
        if images.shape[1] != 3:
            raise ValueError(f"float images must be [B, 3, H, W] (channels first), got {list(images.shape)}")
        x = images.to(device=device, dtype=dtype)
    if x.shape[-2:] != (image_size, image_size):
        downsampling = x.shape[-1] > image_size or x.shape[-2] > image_size
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False,
                          antialias=downsampling)
    return x


def check_finite(features: torch.Tensor, what: str) -> torch.Tensor:
    """features unchanged, or FloatingPointError when any is NaN or infinite: the model is broken (a diverged run),
    and every score made from such features (an argmax, a comparison, a rate) would be meaningless, not low."""
    if not torch.isfinite(features).all():
        raise FloatingPointError(f"NaN or infinite values in the {what}: the model's weights are broken (a diverged "
                                 "run?), and nothing measured with them would mean anything")
    return features


def inverse_temperature(model) -> torch.Tensor:
    """model.inverse_temperature() in float32 (a 0-d tensor), checked: a NaN temperature is a broken model too."""
    return check_finite(model.inverse_temperature().float(), "temperature (logit_scale)")


def _batches(n: int, batch_size: int, desc: str):
    """Start indices of the batches of n items; a tqdm bar when there are many batches."""
    starts = range(0, n, batch_size)
    return tqdm(starts, desc=desc, leave=False) if len(starts) > PROGRESS_MIN_BATCHES else starts


@torch.no_grad()
def encode_images(model, images, batch_size: int = 256, device=None) -> torch.Tensor:
    """images (uint8 [N, S, S, 3] or normalised float [N, 3, H, W]) -> unit-length features [N, D] on `device`
    (default: the model's device; the model is moved there if needed)."""
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
    return check_finite(torch.cat(features), "image features")


@torch.no_grad()
def encode_texts(model, tokenizer, texts: list[str], batch_size: int = 1024, device=None) -> torch.Tensor:
    """C strings -> unit-length text features [C, D] on `device` (default: the model's device)."""
    device = torch.device(device) if device is not None else model_device(model)
    model.to(device)
    texts = list(texts)
    features = []
    with eval_mode(model):
        for i in _batches(len(texts), batch_size, "texts"):
            tokens = tokenizer.encode(texts[i:i + batch_size])  # [b, T]; the text tower drops the padding past <end>
            features.append(F.normalize(model.encode_text(tokens.to(device)).float(), dim=-1))
    if not features:
        return torch.zeros(0, model.config.embed_dim, device=device)
    return check_finite(torch.cat(features), "text features")
