"""Data: where (image, caption) pairs come from and how they reach the model.

source (shapes world, COCO) -> cache (uint8 memmap on disk) -> batches (float tensors on the device)
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

# The per-channel pixel statistics that CLIP normalises with (RGB, on 0-1 pixels).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def normalise(images, device="cpu", dtype=torch.float32) -> torch.Tensor:
    """uint8 pixels [B, S, S, 3] (numpy, memmap or tensor) -> float [B, 3, S, S] on device: (x / 255 - mean) / std,
    the one place pixels become model inputs (training batches, evaluation and the notebooks)."""
    if not torch.is_tensor(images):
        images = np.asarray(images)
        images = torch.from_numpy(images if images.flags.writeable else images.copy())  # memmaps are read-only
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"normalise: expected uint8 pixels [B, S, S, 3], got {images.dtype} {list(images.shape)}")
    x = images.to(device, non_blocking=True).permute(0, 3, 1, 2).contiguous()  # uint8 [B, 3, S, S]
    std = torch.tensor(CLIP_STD, device=x.device, dtype=dtype).view(1, 3, 1, 1)
    mean = torch.tensor(CLIP_MEAN, device=x.device, dtype=dtype).view(1, 3, 1, 1)
    return torch.addcmul(-mean / std, x.to(dtype), 1.0 / (255.0 * std))  # (x / 255 - mean) / std in one pass


@dataclass
class PairedData:
    """Images with their captions: every data source and the cache produce this.

    images:        uint8 [N, S, S, 3] (a numpy array or a read-only memmap)
    captions:      C strings, C >= N (COCO has about 5 per image)
    caption_image: int64 [C], the image index of each caption
    attributes:    optional per-image dicts (the shapes world keeps its scene here)
    meta:          free-form facts about the source (name, size, counts)
    """

    images: np.ndarray
    captions: list[str]
    caption_image: np.ndarray
    attributes: list[dict] | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.caption_image = np.asarray(self.caption_image, dtype=np.int64)
        if len(self.captions) != len(self.caption_image):
            raise ValueError(
                f"PairedData: {len(self.captions)} captions but {len(self.caption_image)} caption_image entries"
            )
        if self.images.ndim != 4 or self.images.shape[-1] != 3 or self.images.dtype != np.uint8:
            raise ValueError(f"PairedData.images must be uint8 [N, S, S, 3], got {self.images.dtype} "
                             f"{self.images.shape}")

    @property
    def num_images(self) -> int:
        """N, the number of images."""
        return len(self.images)

    def captions_of(self, i: int) -> list[str]:
        """All captions of image i."""
        return [self.captions[j] for j in np.flatnonzero(self.caption_image == i)]

    def subset(self, image_ids) -> "PairedData":
        """The images image_ids (in that order) with all their captions. A contiguous range (i, i + 1, ..., j) is a
        slice of self.images and self.attributes, not a copy: a memmap stays a memmap, attributes stay on disk."""
        image_ids = np.asarray(image_ids, dtype=np.int64)
        remap = np.full(self.num_images, -1, dtype=np.int64)
        remap[image_ids] = np.arange(len(image_ids))
        keep = np.flatnonzero(remap[self.caption_image] >= 0)
        keep = keep[np.argsort(remap[self.caption_image[keep]], kind="stable")]
        contiguous = len(image_ids) > 0 and bool((np.diff(image_ids) == 1).all())
        span = slice(image_ids[0], image_ids[-1] + 1) if contiguous else None
        if self.attributes is None:
            attributes = None
        else:
            attributes = self.attributes[span] if contiguous else [self.attributes[i] for i in image_ids]
        return PairedData(
            images=self.images[span] if contiguous else np.asarray(self.images[image_ids]),
            captions=[self.captions[j] for j in keep],
            caption_image=remap[self.caption_image[keep]],
            attributes=attributes,
            meta=dict(self.meta),
        )
