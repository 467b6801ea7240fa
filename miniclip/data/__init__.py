"""Data: where (image, caption) pairs come from and how they reach the model.

source (shapes world, COCO) -> cache (uint8 memmap on disk) -> batches (float tensors on the device)
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# The per-channel pixel statistics that CLIP normalises with (RGB, on 0-1 pixels).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


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
            raise ValueError(f"PairedData.images must be uint8 [N, S, S, 3], got {self.images.dtype} {self.images.shape}")

    @property
    def num_images(self) -> int:
        return len(self.images)

    def captions_of(self, i: int) -> list[str]:
        """All captions of image i."""
        return [self.captions[j] for j in np.flatnonzero(self.caption_image == i)]

    def subset(self, image_ids) -> "PairedData":
        """The images image_ids (in that order) with all their captions."""
        image_ids = np.asarray(image_ids, dtype=np.int64)
        remap = np.full(self.num_images, -1, dtype=np.int64)
        remap[image_ids] = np.arange(len(image_ids))
        keep = np.flatnonzero(remap[self.caption_image] >= 0)
        keep = keep[np.argsort(remap[self.caption_image[keep]], kind="stable")]
        return PairedData(
            images=np.asarray(self.images[image_ids]),
            captions=[self.captions[j] for j in keep],
            caption_image=remap[self.caption_image[keep]],
            attributes=None if self.attributes is None else [self.attributes[i] for i in image_ids],
            meta=dict(self.meta),
        )


SPLIT_SEED_OFFSET = {"train": 0, "val": 1_000_003, "test": 2_000_003}  # held-out shapes come from other seeds


def load_pairs(spec: str, split: str = "train", *, image_size: int = 32, n: int | None = None, seed: int = 0,
               **shapes_options) -> PairedData:
    """The (image, caption) pairs of a data source, by name: "shapes" or a cache directory.

    "shapes": generated on the fly (n images, default 50,000 for train and 1,000 for val/test), each split from
    its own seed. A cache directory (`miniclip prepare`): DIR/<split> when the cache has split folders; a
    single cache without them keeps its last 1,000 images (about 2%) as "val".
    """
    if split not in SPLIT_SEED_OFFSET:
        raise ValueError(f"split must be one of {list(SPLIT_SEED_OFFSET)}, got {split!r}")
    if spec == "shapes":
        from miniclip.data import shapes

        default_n = 50_000 if split == "train" else 1_000
        return shapes.generate(n or default_n, seed=seed + SPLIT_SEED_OFFSET[split], image_size=image_size,
                               **shapes_options)
    from pathlib import Path

    from miniclip.data.cache import load_cache

    root = Path(spec)
    if (root / split / "manifest.json").is_file():
        return load_cache(root / split)
    if (root / "manifest.json").is_file():
        data = load_cache(root)
        held_out = min(1_000, data.num_images // 10)
        ids = np.arange(data.num_images - held_out) if split == "train" else np.arange(data.num_images - held_out, data.num_images)
        return data.subset(ids)
    if not root.exists():
        raise FileNotFoundError(f"data {spec!r}: neither 'shapes' nor an existing cache directory; build one with `miniclip prepare`")
    raise FileNotFoundError(
        f"{root} holds no finished cache (no manifest.json in it or in {root / split}); "
        "run `miniclip prepare ...` again to finish or resume it"
    )
