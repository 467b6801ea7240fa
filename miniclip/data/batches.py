"""Training batches straight from memory: a gather of uint8 images, normalised on the device, one caption each.

    batches = Batches(data, tokens, batch_size=256, device="cpu", seed=0)
    images, tokens, image_idx = batches.get(step)    # float [B, 3, S, S], int64 [B, T], int64 [B]
    negatives = hard_negative_tokens(data.captions, tokenizer)   # int64 [C, T]: each caption's swapped twin
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from miniclip.data import PairedData, normalise
from miniclip.data.shapes import swap_relation
from miniclip.tokenizer import Tokenizer


def random_resized_crop(x: torch.Tensor, rng: np.random.Generator, area=(0.8, 1.0), ratio=(3 / 4, 4 / 3)):
    """Per-sample random crop (share of the image's area in `area`, width / height in `ratio`) resized back:
    [B, C, S, S] -> [B, C, S, S], in one grid_sample call. The grid is F.affine_grid's for theta = [[w, 0, cx],
    [0, h, cy]], built directly (cheaper); w, h > 0: it never flips, since captions speak of left and right."""
    b, _, s, _ = x.shape
    share = rng.uniform(*area, b)
    aspect = np.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1]), b))
    w = np.minimum(np.sqrt(share * aspect), 1.0)  # crop width / image width
    h = np.minimum(np.sqrt(share / aspect), 1.0)
    cx = rng.uniform(-1.0, 1.0, b) * (1.0 - w)  # crop centre, in [-1, 1] grid units
    cy = rng.uniform(-1.0, 1.0, b) * (1.0 - h)
    params = torch.from_numpy(np.stack([w, h, cx, cy], 1).astype(np.float32)).to(x.device)  # [B, 4]
    base = (torch.arange(s, device=x.device, dtype=torch.float32) * 2 + 1) / s - 1  # pixel centres in [-1, 1], [S]
    gx = params[:, 0, None] * base + params[:, 2, None]  # [B, S]: input x of each output column
    gy = params[:, 1, None] * base + params[:, 3, None]  # [B, S]: input y of each output row
    grid = torch.empty(b, s, s, 2, device=x.device)  # [B, S, S, 2]: (x, y) to sample for each output pixel
    grid[..., 0] = gx[:, None, :]
    grid[..., 1] = gy[:, :, None]
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class Batches:
    """Training batches straight from a PairedData: (images float32 [B, 3, S, S] on device, tokens [B, T]
    on device, image_idx int64 [B] on the CPU); len() = steps per epoch.

    Epoch e is a seeded permutation of the captioned images with one random caption each, so no batch holds two
    captions of one image; the batch of step k is a function of (seed, k) only, the same after a restart.
    augment=True: per-sample random resized crop (80-100% of the area), no flips.
    """

    def __init__(self, data: PairedData, tokens: torch.Tensor, batch_size: int, *, device="cpu", seed: int = 0,
                 augment: bool = False, drop_last: bool = True):  # fmt: skip
        if len(tokens) != len(data.captions):
            raise ValueError(f"tokens has {len(tokens)} rows but the data has {len(data.captions)} captions")
        self.data, self.batch_size, self.seed = data, batch_size, seed
        self.augment, self.drop_last = augment, drop_last
        self.device = torch.device(device)
        # captions grouped by image: those of image i are self.order[self.start[i] : self.start[i] + self.count[i]]
        self.order = np.argsort(data.caption_image, kind="stable")
        self.count = np.bincount(data.caption_image, minlength=data.num_images)
        self.start = np.concatenate([[0], np.cumsum(self.count)[:-1]])
        self.usable = np.flatnonzero(self.count > 0)  # images with at least one caption
        if len(self) == 0:
            n = len(self.usable)
            raise ValueError(f"{n} captioned images make no batch of {batch_size} pairs (each image once a batch): "
                             "use more images (--num-images, or a larger cache) or a smaller --batch-size")
        self.tokens = tokens.to(self.device)
        self.images, self._pinned = data.images, None
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            if data.images.nbytes < 0.5 * free:  # keep every uint8 image on the GPU
                self.images = torch.empty(data.images.shape, dtype=torch.uint8, device=self.device)
                for i in range(0, data.num_images, 8192):
                    self.images[i : i + 8192] = torch.from_numpy(np.array(data.images[i : i + 8192])).to(self.device)
            else:  # gather on the CPU into pinned buffers (two, alternating), copy asynchronously
                shape = (batch_size,) + data.images.shape[1:]
                self._pinned = [torch.empty(shape, dtype=torch.uint8).pin_memory() for _ in range(2)]
                self._events, self._slot = [None, None], 0
        self._epoch, self._epoch_plan = None, None

    def __len__(self) -> int:
        n = len(self.usable)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _plan(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(image order [n], chosen caption of each image [n]) for one epoch, from (seed, epoch) only."""
        if self._epoch != epoch:
            images = np.random.default_rng([self.seed, epoch, 0]).permutation(self.usable)
            pick = np.random.default_rng([self.seed, epoch, 1]).random(len(images))
            chosen = self.order[self.start[images] + (pick * self.count[images]).astype(np.int64)]
            self._epoch, self._epoch_plan = epoch, (images, chosen)
        return self._epoch_plan

    def indices(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(image indices int64 [B], caption indices int64 [B]) of batch `step`, images in ascending order."""
        epoch, b = divmod(step, len(self))
        images, chosen = self._plan(epoch)
        sl = slice(b * self.batch_size, (b + 1) * self.batch_size)
        image_idx, caption_idx = images[sl], chosen[sl]
        sort = np.argsort(image_idx)  # ascending reads from the memmap
        return image_idx[sort], caption_idx[sort]

    def caption_ids(self, step: int) -> torch.Tensor:
        """int64 [B] (CPU): the caption index of each row of get(step) (rows of the `tokens` given)."""
        return torch.from_numpy(self.indices(step)[1])

    def _gather(self, image_idx: np.ndarray) -> torch.Tensor:
        """uint8 [B, S, S, 3] on the device."""
        if torch.is_tensor(self.images):  # already on the GPU
            return self.images[torch.from_numpy(image_idx).to(self.device)]
        if self._pinned is None:
            return torch.from_numpy(np.asarray(self.images[image_idx]))
        slot = self._slot = 1 - self._slot
        if self._events[slot] is not None:
            self._events[slot].synchronize()  # its previous copy has finished
        buf = self._pinned[slot][: len(image_idx)]
        np.take(self.images, image_idx, axis=0, out=buf.numpy())
        x = buf.to(self.device, non_blocking=True)
        self._events[slot] = torch.cuda.Event()
        self._events[slot].record()
        return x

    def get(self, step: int):
        """The batch of step `step` (any step, in any order): (images, tokens, image_idx)."""
        image_idx, caption_idx = self.indices(step)
        x = normalise(self._gather(image_idx), self.device)  # [B, 3, S, S]
        if self.augment:
            x = random_resized_crop(x, np.random.default_rng([self.seed, step, 2]))
        tokens = self.tokens[torch.from_numpy(caption_idx).to(self.device)]  # [B, T]
        return x, tokens, torch.from_numpy(image_idx)


def hard_negative_tokens(captions: list[str], tokenizer: Tokenizer) -> torch.Tensor:
    """[C, T]: the argument-swapped twin of each caption's relation, or a row of -1 where a caption has none."""
    swapped = [swap_relation(c) for c in captions]
    tokens = torch.full((len(captions), tokenizer.context_length), -1, dtype=torch.long)
    idx = [i for i, s in enumerate(swapped) if s is not None]
    if idx:
        tokens[idx] = tokenizer.encode([swapped[i] for i in idx])
    return tokens
