"""The contrastive loss: in a batch of N pairs, each image must pick out its own caption and vice versa.

logits[i, j] = scale * cos(image_i, text_j). The true pairs sit on the diagonal, so the targets of row i and of
column i are both i: a cross-entropy over the rows (image -> text) and one over the columns (text -> image),
averaged. Equal logits give ln(N): the model is guessing among N captions.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


def clip_loss(logits_per_image: torch.Tensor, logits_per_text: torch.Tensor | None = None,
              offset: int = 0) -> torch.Tensor:
    """Symmetric cross-entropy, the mean of the image->text and text->image losses (a scalar, in nats).

    logits_per_image: [n, N] or [n, N + M]: n images against N captions, optionally followed by M extra
        negative captions (hard negatives); image i's caption is column offset + i.
    logits_per_text:  [n, N], n captions against N images; by default the transpose of the square part,
        which is right in a single process. Under DDP each rank passes its own rows and offset = rank * n.
    """
    n = logits_per_image.shape[0]
    if logits_per_text is None:
        logits_per_text = logits_per_image[:, :n].t()
    targets = torch.arange(n, device=logits_per_image.device) + offset
    loss_i2t = F.cross_entropy(logits_per_image, targets)  # each image picks its caption among all captions
    loss_t2i = F.cross_entropy(logits_per_text, targets)  # each caption picks its image among all images
    return (loss_i2t + loss_t2i) / 2


def gather_features(features: torch.Tensor) -> torch.Tensor:
    """[n, D] on each rank -> [world * n, D], the features of every rank, with gradients flowing back to each
    (outside torch.distributed: `features` unchanged). More negatives make a harder, better task: with 8 GPUs of
    256 pairs each, every image is compared with 2048 captions instead of 256."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return features
    from torch.distributed.nn.functional import all_gather  # an all_gather whose backward sends gradients home

    return torch.cat(all_gather(features), dim=0)


def distributed_clip_loss(image_features: torch.Tensor, text_features: torch.Tensor, scale: torch.Tensor,
                          extra_text_features: torch.Tensor | None = None) -> torch.Tensor:
    """The CLIP loss of normalised features [n, D] against the global batch gathered from all ranks.

    Each rank computes only its own n rows (n x world*n logits, not world*n squared) and DDP averages the
    gradients; the result equals one process on the concatenated batch. extra_text_features [m, D] are hard
    negatives: captions that belong to no image, shown to every image as wrong answers.
    """
    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    all_images = gather_features(image_features)  # [N, D]
    all_texts = gather_features(text_features)  # [N, D]
    if extra_text_features is not None:
        all_texts = torch.cat([all_texts, gather_features(extra_text_features)])  # [N + M, D]
    logits_per_image = scale * image_features @ all_texts.t()  # [n, N (+ M)]
    logits_per_text = scale * text_features @ all_images.t()  # [n, N]
    return clip_loss(logits_per_image, logits_per_text, offset=rank * image_features.shape[0])


def siglip_loss(cosines: torch.Tensor, inverse_temperature: torch.Tensor | float,
                bias: torch.Tensor | float) -> torch.Tensor:
    """SigLIP's pairwise sigmoid loss (Zhai et al., 2023), a scalar in nats per image.

    cosines: [N, N], image i (row) against text j (column); the matching pairs are on the diagonal.
    Each pair is its own yes/no question: logit z = inverse_temperature * cosine + bias, label +1 on the diagonal
    and -1 elsewhere, loss -log sigmoid(label * z), summed over each image's N texts and averaged over the N
    images. No softmax over the batch, so no rank needs every other rank's features for the normaliser.
    """
    labels = 2 * torch.eye(len(cosines), device=cosines.device, dtype=cosines.dtype) - 1  # [N, N]: +1 diagonal, -1 off
    logits = inverse_temperature * cosines + bias  # [N, N]
    return -F.logsigmoid(labels * logits).sum(dim=1).mean()
