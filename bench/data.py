"""Benchmark of the data layer: the cache against the plain way, measured side by side in one run.

    python bench/data.py [--jpegs 300] [--batch-size 256] [--workers 2] [--threads 1]

(1) cache build (draft-mode decode, worker processes) vs a plain full-size PIL decode + resize + centre crop
    of the same 640x480 JPEGs, one process: target >= 3x.
(2) batches/s of the cache loader (Batches) vs a torch DataLoader over the JPEG files with torchvision
    transforms (RandomResizedCrop + ToTensor + Normalize), same batch size, 2 workers: target >= 30x.
(3) shapes-world generation rate at 32 px (one core, CPU time).
The machine's speed drifts, so what counts is each ratio against its peer in the same run: the cache
builds take turns with their peer and the best of a few rounds counts; the DataLoader is timed in one
steady run of its own. Batches runs in one torch thread by default:
on a shared 2-core machine a 2-thread op collapses whenever another process takes a core.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from miniclip.data import CLIP_MEAN, CLIP_STD, PairedData, shapes  # noqa: E402
from miniclip.data.batches import Batches  # noqa: E402
from miniclip.data.cache import build_cache, load_cache  # noqa: E402
from miniclip.data.coco import Record  # noqa: E402


def make_photo(seed: int, size=(640, 480)) -> Image.Image:
    """A photo-like image: a smooth gradient, random filled shapes and grain, so JPEG sizes are realistic."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    base = rng.uniform(0, 255, 3) + rng.uniform(-120, 120, 3) * (xx[..., None] * rng.uniform(-1, 1) + yy[..., None])
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(rng.integers(10, 40)):
        x0, y0 = rng.integers(0, w), rng.integers(0, h)
        x1, y1 = x0 + rng.integers(10, w // 2), y0 + rng.integers(10, h // 2)
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=fill)
    grain = rng.normal(0, rng.uniform(4, 16), (h, w, 3))
    return Image.fromarray(np.clip(np.asarray(img) + grain, 0, 255).astype(np.uint8))


def plain_decode(path: str, size: int) -> np.ndarray:
    """The plain way: full-size decode, resize the shorter side to size, centre crop."""
    img = Image.open(path).convert("RGB")
    w, h = img.size
    s = size / min(w, h)
    img = img.resize((max(size, round(w * s)), max(size, round(h * s))), Image.Resampling.BICUBIC)
    left, top = (img.width - size) // 2, (img.height - size) // 2
    return np.asarray(img.crop((left, top, left + size, top + size)))


class JpegFiles(torch.utils.data.Dataset):
    """The DataLoader peer: reads and transforms JPEG files on every access."""

    def __init__(self, paths, length, size, augment):
        import torchvision.transforms as T

        self.paths, self.length = paths, length
        crop = [T.RandomResizedCrop(size, scale=(0.8, 1.0))] if augment else [T.Resize(size), T.CenterCrop(size)]
        self.transform = T.Compose(crop + [T.ToTensor(), T.Normalize(CLIP_MEAN, CLIP_STD)])

    def __len__(self):
        return self.length

    def __getitem__(self, i):
        return self.transform(Image.open(self.paths[i % len(self.paths)]).convert("RGB")), i


def rate(fn, n_items):
    """items/s of one timed call of fn()."""
    t = time.perf_counter()
    fn()
    return n_items / (time.perf_counter() - t)


def best_interleaved(fns: dict, n_items: dict, rounds: int) -> dict:
    """Best rate of each fn over `rounds` rounds, the fns taking turns (fair when the machine's speed drifts)."""
    best = {k: 0.0 for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            best[k] = max(best[k], rate(fn, n_items[k]))
    return best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jpegs", type=int, default=300, help="number of 640x480 JPEGs to generate")
    parser.add_argument("--size", type=int, default=64, help="cache image side")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2, help="cache builder and DataLoader worker processes")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the Batches measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (best one counts)")
    parser.add_argument("--peer-batches", type=int, default=6, help="DataLoader batches timed")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = []
        for k in range(args.jpegs):
            path = tmp / "jpegs" / f"{k:06d}.jpg"
            path.parent.mkdir(exist_ok=True)
            make_photo(k).save(path, "JPEG", quality=90)
            paths.append(str(path))
        mean_kb = np.mean([os.path.getsize(p) for p in paths]) / 1024
        print(f"{len(paths)} JPEGs of 640x480, {mean_kb:.0f} KB on average; {os.cpu_count()} cores, "
              f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip

        # (1) cache build vs plain decode -----------------------------------------------------------------
        n = len(paths)
        records = [Record(p, [f"photo {i}"], "train", i) for i, p in enumerate(paths)]
        counter = iter(range(1000))

        def build(workers):
            with contextlib.redirect_stdout(io.StringIO()):  # the builder's summary lines
                build_cache(records, tmp / f"cache{next(counter)}", size=args.size, workers=workers, source="bench")

        build(args.workers)  # start the decoder processes' server once (as a long build would)
        fns = {"plain": lambda: [plain_decode(p, args.size) for p in paths], "one": lambda: build(1),
               "many": lambda: build(args.workers)}  # fmt: skip
        r = best_interleaved(fns, dict.fromkeys(fns, n), args.rounds)
        rows.append(("cache build, 1 process (images/s)", r["one"], r["plain"], "(draft alone)"))
        rows.append((f"cache build, {args.workers} processes (images/s)", r["many"], r["plain"], ">= 3x"))

        # (2) Batches vs DataLoader -------------------------------------------------------------------------
        cached = load_cache(tmp / "cache0")
        tiles = max(1, 8192 // cached.num_images)  # a larger set for realistic random gathers
        images = np.concatenate([np.asarray(cached.images)] * tiles)  # [N, S, S, 3]
        data = PairedData(images, [f"c{i}" for i in range(len(images))], np.arange(len(images)))
        tokens = torch.randint(0, 1000, (len(images), 32))
        for augment in (False, True):
            # the peer in one uninterrupted run: idle gaps would let its workers fill the prefetch queue
            loader = torch.utils.data.DataLoader(JpegFiles(paths, 10**6, args.size, augment), shuffle=True,
                                                 batch_size=args.batch_size, num_workers=args.workers)  # fmt: skip
            it = iter(loader)
            next(it)  # workers started, steady state
            peer = rate(lambda: [next(it) for _ in range(args.peer_batches)], args.peer_batches)
            del it, loader  # stop its workers before measuring ours
            batches = Batches(data, tokens, args.batch_size, augment=augment)
            batches.get(0)
            ours = max(rate(lambda: [batches.get(s) for s in range(1, 31)], 30) for _ in range(args.rounds))
            rows.append((f"Batches{' + augment' if augment else ''} (batches/s)", ours, peer, ">= 30x"))

    # (3) shapes world ----------------------------------------------------------------------------------------
    shapes.generate(500)  # warm the mask cache
    t = time.process_time()  # one process: CPU time does not count the time other processes take the core
    shapes.generate(10_000, seed=1)
    gen = 10_000 / (time.process_time() - t)
    rows.append(("shapes generation, 32 px (images/CPU s)", gen, None, "50k in < 20 s"))

    print(f"\n{'measure':44s} {'ours':>10s} {'peer':>10s} {'ratio':>8s}  target")
    for name, ours, peer, target in rows:
        ratio = f"{ours / peer:7.1f}x" if peer else "       -"
        peer_s = f"{peer:10.1f}" if peer else f"{'-':>10s}"
        print(f"{name:44s} {ours:10.1f} {peer_s} {ratio}  {target}")
    print(f"peers: a plain full-size PIL decode + resize + crop, 1 process; a DataLoader with {args.workers} workers "
          "over the JPEG files (RandomResizedCrop for augment, else Resize + CenterCrop; ToTensor; Normalize).")
    print(f"Batches measured with {args.threads} torch thread(s); 50k shapes images take {50_000 / gen:.1f} CPU s.")


if __name__ == "__main__":
    main()
