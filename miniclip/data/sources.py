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
    "test": build split folders for a test set of its own. n: its first n images (all of them when it holds fewer).
    shapes_options (generate's knobs) apply to the shapes world only: a cache's images are fixed.
    """
    if split not in SPLIT_SEED_OFFSET:
        raise ValueError(f"split must be one of {list(SPLIT_SEED_OFFSET)}, got {split!r}")
    if n is not None and n < 1:
        raise ValueError(f"n must be 1 or more images (None: the default), got {n}")
    if spec == "shapes":
        if n is None:
            n = 50_000 if split == "train" else 1_000
        return shapes.generate(n, seed=seed + SPLIT_SEED_OFFSET[split], image_size=image_size, **shapes_options)
    if shapes_options:
        raise ValueError(f"data {spec!r} is a cache, and {sorted(shapes_options)} change the shapes world only; "
                         "build a cache with them instead (`miniclip prepare shapes ...`)")
    root = Path(spec)
    if (root / split / "manifest.json").is_file():
        return _first(load_cache(root / split), n)
    if (root / "manifest.json").is_file():
        data = load_cache(root)
        held_out = min(1_000, data.num_images // 10)
        cut = data.num_images - held_out
        data = data.subset(np.arange(cut) if split == "train" else np.arange(cut, data.num_images))  # views, no copy
        return _first(data, n)
    if not root.exists():
        raise FileNotFoundError(f"data {spec!r}: neither 'shapes' nor an existing cache directory; "
                                "build one with `miniclip prepare`")
    if splits := [s for s in SPLIT_SEED_OFFSET if (root / s / "manifest.json").is_file()]:
        raise FileNotFoundError(f"{root} holds the splits {splits} but no {split}: build it with `miniclip prepare "
                                f"coco ... --split {split} --out {root / split}`")
    if (root / "run.json").is_file() or (root / "model.safetensors").is_file():
        raise FileNotFoundError(f"data {spec!r} is a run folder (a trained model), not data: pass 'shapes' or a cache "
                                "that `miniclip prepare` built")
    if (root / "progress.json").is_file() or (root / split / "progress.json").is_file():
        raise FileNotFoundError(f"{root} holds a cache whose build did not finish (progress.json, no manifest.json); "
                                "run the same `miniclip prepare ...` command again to finish or resume it")
    raise FileNotFoundError(f"{root} holds no cache (no manifest.json in it or in {root / split}): build one with "
                            "`miniclip prepare coco ... --out DIR` (images and captions -> a cache)")


def _first(data: PairedData, n: int | None) -> PairedData:
    """The first n images of a cache (a view), or all of them when n is None or at least its size."""
    return data if n is None or n >= data.num_images else data.subset(np.arange(n))
