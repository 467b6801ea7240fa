"""Where pairs come from, by name: `load_pairs("shapes", "val")` or `load_pairs("data/coco64", "train")`."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from miniclip.data import PairedData, shapes
from miniclip.data.cache import load_cache

SPLIT_SEED_OFFSET = {"train": 0, "val": 1_000_003, "test": 2_000_003}  # held-out shapes come from other seeds


def load_pairs(spec: str, split: str = "train", *, image_size: int = 32, n: int | None = None, seed: int = 0,
               **shapes_options) -> PairedData:
    """The (image, caption) pairs of a data source, by name: "shapes" or a cache directory.

    "shapes": generated on the fly (n images, default 50,000 for train and 1,000 for val/test), each split from
    its own seed. A cache directory (`miniclip prepare`): DIR/<split> when the cache has split folders; a
    single cache without them keeps its last 1,000 images (at most a tenth) as "val", and gives the same images for
    "test": build split folders for a test set of its own.
    """
    if split not in SPLIT_SEED_OFFSET:
        raise ValueError(f"split must be one of {list(SPLIT_SEED_OFFSET)}, got {split!r}")
    if spec == "shapes":
        if n is not None and n < 1:
            raise ValueError(f"n must be 1 or more images (None: the default), got {n}")
        default_n = 50_000 if split == "train" else 1_000
        return shapes.generate(n if n is not None else default_n, seed=seed + SPLIT_SEED_OFFSET[split], image_size=image_size,
                               **shapes_options)
    root = Path(spec)
    if (root / split / "manifest.json").is_file():
        return load_cache(root / split)
    if (root / "manifest.json").is_file():
        data = load_cache(root)
        held_out = min(1_000, data.num_images // 10)
        cut = data.num_images - held_out
        return data.subset(np.arange(cut) if split == "train" else np.arange(cut, data.num_images))  # views, no copy
    if not root.exists():
        raise FileNotFoundError(f"data {spec!r}: neither 'shapes' nor an existing cache directory; "
                                "build one with `miniclip prepare`")
    raise FileNotFoundError(
        f"{root} holds no finished cache (no manifest.json in it or in {root / split}); "
        "run `miniclip prepare ...` again to finish or resume it"
    )
