"""The image cache: decode every image once into a uint8 file, then feed batches straight from it.

    build_cache(records, out_dir, size)   decode + resize + centre-crop in worker processes, resumable
    save_paired(data, out_dir)            the same files from already-decoded images (the shapes world)
    load_cache(out_dir) -> PairedData     images as a read-only memmap [N, S, S, 3]
    Batches(data, tokens, batch_size)     training batches: float images on the device, one caption each

On disk (out_dir/):
    images.u8        uint8 [N, S, S, 3], append-only while building
    captions.jsonl   one line per image: {"id", "split", "captions"[, "attributes"]}
    progress.json    while building: records consumed, images written, bytes of captions.jsonl
    manifest.json    written last and atomically: without it the cache is incomplete

Decoding is the bottleneck of small-model CLIP training (one core decodes a few hundred COCO JPEGs/s).
Pillow's draft mode decodes a JPEG at 1/2, 1/4 or 1/8 scale straight from the DCT, and the resize then
starts from a 16x smaller image: together about 2.5x cheaper than a full-size decode and resize (the
entropy decoding of the file stays), times the number of worker processes. It is paid once; after that a
batch is a memory gather, not a decode.
"""
from __future__ import annotations

import io
import json
import math
import multiprocessing
import os
import signal
import threading
import time
import warnings
import zipfile
from collections import Counter, deque
from concurrent.futures import ProcessPoolExecutor
from itertools import islice
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from miniclip.data import CLIP_MEAN, CLIP_STD, PairedData
from miniclip.data.coco import Record, ZipMember

FORMAT_VERSION = 1
MIN_SIDE = 8  # images smaller than this (pixels, either side) are skipped
MAX_CAPTION_CHARS = 1000  # longer captions are cut at a word boundary
MAX_EXAMPLES = 1000  # skipped samples listed by id in the manifest (counts are always complete)


class IncompleteCacheError(RuntimeError):
    """A cache folder without manifest.json: a build was interrupted (or is still running)."""


# ------------------------------------------------------------------------------------------
# Cleaning one sample: captions, then pixels


def clean_captions(captions) -> tuple[list[str], Counter]:
    """Usable captions of one image, and a count of what was repaired or dropped.

    Whitespace is collapsed; invalid UTF-8 bytes are removed; captions over MAX_CAPTION_CHARS are cut at a
    word boundary; empty ones are dropped.
    """
    out, events = [], Counter()
    for c in captions or []:
        if isinstance(c, (bytes, bytearray)):
            c = bytes(c).decode("utf-8", errors="surrogateescape")
        if not isinstance(c, str):
            events["non-text caption dropped"] += 1
            continue
        try:
            c.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: bytes that were not UTF-8 (kept by surrogateescape)
            c = c.encode("utf-8", errors="ignore").decode("utf-8")
            events["non-UTF-8 bytes removed from caption"] += 1
        c = " ".join(c.split())
        if len(c) > MAX_CAPTION_CHARS:
            cut = c[: MAX_CAPTION_CHARS + 1]
            c = cut.rsplit(" ", 1)[0] if " " in cut else cut[:MAX_CAPTION_CHARS]
            events[f"caption truncated (> {MAX_CAPTION_CHARS} chars)"] += 1
        if not c:
            events["empty caption dropped"] += 1
            continue
        out.append(c)
    return out, events


class BadSample(Exception):
    """A sample that cannot be used; the message is the reason recorded in the manifest."""


_ZIPS: dict[str, zipfile.ZipFile] = {}  # per process: zip files stay open between images


def open_image(source) -> Image.Image:
    """A lazily opened PIL image from bytes, a path, a ZipMember, a PIL image or a uint8 array [H, W, 3]."""
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, np.ndarray):
        return Image.fromarray(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return Image.open(io.BytesIO(source))
    if isinstance(source, ZipMember):
        zf = _ZIPS.get(source.zip_path) or _ZIPS.setdefault(source.zip_path, zipfile.ZipFile(source.zip_path))
        try:
            data = zf.read(source.name)
        except KeyError:
            raise BadSample("missing file") from None
        return Image.open(io.BytesIO(data))
    if isinstance(source, (str, os.PathLike)):
        if not os.path.exists(source):
            raise BadSample("missing file")
        return Image.open(source)
    raise BadSample(f"unsupported image type {type(source).__name__}")


def to_rgb(img: Image.Image) -> tuple[Image.Image, str | None]:
    """Convert any mode to RGB the sound way; returns (image, "MODE -> RGB" or None if it was RGB)."""
    mode = img.mode
    if mode == "RGB":
        return img, None
    if mode.startswith("I;16") or mode in ("I", "F"):
        a = np.asarray(img, dtype=np.float64)  # 16/32-bit grey: rescale to 0..255 rather than clip
        a = a / 257.0 if mode.startswith("I;16") or a.max() > 255 else a
        img = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "L")
    elif mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")  # composite transparent pixels onto white
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    return img.convert("RGB"), f"{mode} -> RGB"


def decode_image(source, size: int) -> tuple[np.ndarray, str | None]:
    """Decode, convert to RGB, resize the shorter side to size and centre-crop: (uint8 [size, size, 3], event).

    JPEGs are decoded by Pillow's draft mode at the smallest DCT scale that keeps both sides >= size.
    Raises BadSample(reason) for missing, unreadable or too small images.
    """
    try:
        with warnings.catch_warnings():  # e.g. "corrupt EXIF data": what matters is whether pixels come out
            warnings.simplefilter("ignore")
            return _decode(source, size)
    except BadSample:
        raise
    except Image.DecompressionBombError:
        raise BadSample("unreadable (too many pixels)") from None
    except UnidentifiedImageError:
        raise BadSample("unreadable (not an image)") from None
    except (OSError, SyntaxError, ValueError) as err:  # truncated or corrupt data
        raise BadSample("unreadable (truncated or corrupt)") from err
    except Exception as err:  # never let one sample end a run
        raise BadSample(f"unreadable ({type(err).__name__})") from err


def _decode(source, size: int) -> tuple[np.ndarray, str | None]:
    img = open_image(source)
    w, h = img.size
    if min(w, h) < MIN_SIDE:
        raise BadSample(f"too small (< {MIN_SIDE} px)")
    if img.format == "JPEG":
        img.draft("RGB", (size, size))  # decode at 1/2, 1/4 or 1/8 scale, never below size
    img.load()
    img, event = to_rgb(img)
    w, h = img.size
    side = min(w, h)
    box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)  # centre square, source pixels
    img = img.resize((size, size), Image.Resampling.BICUBIC, box=box)
    return np.asarray(img, dtype=np.uint8), event


def process_chunk(chunk: list[tuple], size: int) -> list[tuple]:
    """Worker: [(image, captions)] -> [(uint8 [S, S, 3] or None, captions, events Counter, skip reason or None)]."""
    out = []
    for image, captions in chunk:
        good, events = clean_captions(captions)
        if not good:
            out.append((None, [], events, "no usable caption"))
            continue
        try:
            pixels, event = decode_image(image, size)
        except BadSample as bad:
            out.append((None, [], events, str(bad)))
            continue
        if event:
            events[event] += 1
        out.append((pixels, good, events, None))
    return out


def _alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie (killed but not yet reaped by its parent)."""
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:  # no /proc (macOS)
        return True


def _init_worker(parent_pid: int) -> None:
    """Decoder process set-up: Ctrl-C is handled once, by the main process; exit if the main process dies."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch():
        while _alive(parent_pid):
            time.sleep(0.5)
        os._exit(1)  # the main process was killed (kill -9): nobody will send us work again

    threading.Thread(target=watch, daemon=True).start()


def _decoder_pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes for process_chunk, started at once.

    fork starts fastest and needs no `if __name__ == "__main__":` guard in the calling script, but copying a
    process while other threads run (a streaming download has some) can deadlock the copy: then forkserver.
    """
    methods = multiprocessing.get_all_start_methods()
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and type(t).__name__ != "TMonitor"]
    if "fork" in methods and not others:  # (tqdm's TMonitor thread only sleeps)
        ctx = multiprocessing.get_context("fork")
    else:
        ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        if ctx.get_start_method() == "forkserver":
            ctx.set_forkserver_preload([__name__])  # import this module (and torch) once, not once per worker
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(os.getpid(),))
    pool.submit(int).result()  # start the workers now, before this process starts any thread of its own
    return pool


# ------------------------------------------------------------------------------------------
# Building and loading


def _write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, default=_plain)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _chunks(records, n: int):
    it = iter(records)
    while chunk := list(islice(it, n)):
        yield chunk


class _Writer:
    """Appends decoded chunks to images.u8 / captions.jsonl and commits each one in progress.json.

    A chunk counts only once progress.json (replaced atomically) says so. Every write first truncates the
    files to the committed lengths, so a chunk interrupted half-way (Ctrl-C, kill -9) is simply redone.
    """

    def __init__(self, out: Path, source, size: int):
        self.out, self.frame = out, size * size * 3  # bytes per image
        self.progress = out / "progress.json"
        if self.progress.exists():
            self.state = json.loads(self.progress.read_text())
        else:
            self.state = {
                "format": "miniclip-cache", "version": FORMAT_VERSION, "source": source, "size": size,
                "records_read": 0, "num_images": 0, "num_captions": 0, "captions_bytes": 0,
                "splits": {}, "skipped": {}, "converted": {}, "skipped_examples": [],
            }  # fmt: skip
        if self.state["source"] != source or self.state["size"] != size:
            raise ValueError(
                f"{out} holds a partial cache of source={self.state['source']} size={self.state['size']}, not "
                f"source={source} size={size}; delete it or choose another out_dir"
            )
        self.images = open(out / "images.u8", "ab")
        self.captions = open(out / "captions.jsonl", "ab")
        self._truncate()
        _write_json_atomic(self.progress, self.state)

    def _truncate(self):
        self.images.truncate(self.state["num_images"] * self.frame)
        self.captions.truncate(self.state["captions_bytes"])

    def commit(self, start: int, result: list[tuple], meta: list[tuple]) -> None:
        """Write the chunk of records start, start + 1, ...: result from process_chunk, meta [(split, image_id)].

        Committing a chunk twice (Ctrl-C right after a commit, then the final drain) writes it once.
        """
        st = self.state
        if start < st["records_read"]:
            return  # already committed
        assert start == st["records_read"], "chunks must be committed in order"
        self._truncate()  # drop anything a previous, interrupted write left behind
        skipped, converted, splits = Counter(st["skipped"]), Counter(st["converted"]), Counter(st["splits"])
        examples, n_images, n_captions = list(st["skipped_examples"]), st["num_images"], st["num_captions"]
        for (pixels, caps, events, reason), (split, image_id) in zip(result, meta):
            if reason is not None:
                skipped[reason] += 1
                if len(examples) < MAX_EXAMPLES:
                    examples.append({"image_id": image_id, "reason": reason})
                continue
            converted.update(events)  # repairs of the samples kept
            self.images.write(pixels.tobytes())
            self.captions.write((json.dumps({"id": image_id, "split": split, "captions": caps}) + "\n").encode())
            n_images, n_captions = n_images + 1, n_captions + len(caps)
            splits[split] += 1
        self.images.flush()
        self.captions.flush()
        st.update(records_read=st["records_read"] + len(meta), num_images=n_images, num_captions=n_captions,
                  captions_bytes=self.captions.tell(), skipped=dict(skipped), converted=dict(converted),
                  splits=dict(splits), skipped_examples=examples)  # fmt: skip
        _write_json_atomic(self.progress, st)  # the chunk is committed only now

    def close(self):
        self.images.close()
        self.captions.close()


def build_cache(
    records,
    out_dir,
    size: int = 64,
    workers: int | None = None,
    limit: int | None = None,
    *,
    source=None,
    chunk_size: int = 64,
) -> dict:
    """Decode records once into out_dir (see the module docstring); returns the manifest.

    records: an iterable of Record(image, captions, split, image_id) (or 4-tuples), or a PairedData
    (written as it is, resized to size if needed). size: output side in pixels. workers: decoder
    processes (default: all cores; 1 = in this process). limit: read at most this many records.
    source: a description stored in the manifest; a rerun with the same source and size resumes an
    interrupted build, skipping the records already consumed.
    """
    if isinstance(records, PairedData):
        return save_paired(records, out_dir, size=size, source=source)
    source = json.loads(json.dumps(source))  # as it will read back from progress.json
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if (out / "manifest.json").exists():
        manifest = json.loads((out / "manifest.json").read_text())
        if manifest.get("source") == source and manifest.get("size") == size and manifest.get("limit") == limit:
            print(f"cache: {out} is already complete ({manifest['num_images']} images)")
            return manifest
        raise ValueError(
            f"{out} holds a complete cache of another source/size/limit; delete it or choose another out_dir"
        )

    writer = _Writer(out, source, size)
    done = writer.state["records_read"]
    records = iter(records)
    if done:
        print(f"cache: resuming {out} after {done} records ({writer.state['num_images']} images)")
        for _ in islice(records, done):  # skip what is already in the cache
            pass
    if limit is not None:
        records = islice(records, max(0, limit - done))

    workers = workers or os.cpu_count() or 1
    pool = _decoder_pool(workers) if workers > 1 else None
    pending: deque = deque()  # (first record, future or result, meta) of chunks in flight, oldest first
    bar = tqdm(total=limit, initial=done, desc="decoding", unit="img", leave=False)

    def drain(keep: int):
        while len(pending) > keep:
            start, job, meta = pending[0]
            writer.commit(start, job.result() if pool else job, meta)
            pending.popleft()  # only once committed: an interrupted commit is redone
            bar.update(len(meta))

    try:
        start = done
        for chunk in _chunks(records, chunk_size):
            chunk = [Record(*r) for r in chunk]
            work = [(r.image, r.captions) for r in chunk]
            meta = [(r.split, r.image_id) for r in chunk]
            job = pool.submit(process_chunk, work, size) if pool else process_chunk(work, size)
            pending.append((start, job, meta))
            start += len(chunk)
            drain(keep=2 * workers if pool else 0)  # bounded: a streamed source is never read far ahead
        drain(keep=0)
    except BaseException:  # Ctrl-C, or the source failed: keep the chunks already decoded, then stop
        try:
            drain(keep=0)
        finally:
            done = writer.state["records_read"]
            print(f"\ncache: stopped after {done} records; run the same command again to resume")
        raise
    finally:
        bar.close()
        writer.close()
        if pool:
            pool.shutdown(wait=True, cancel_futures=True)

    manifest = {k: v for k, v in writer.state.items() if k != "captions_bytes"}
    manifest.update(limit=limit, images_file="images.u8", captions_file="captions.jsonl",
                    shape=[manifest["num_images"], size, size, 3], dtype="uint8")  # fmt: skip
    _write_json_atomic(out / "manifest.json", manifest)  # LAST: from now on the cache is complete
    writer.progress.unlink(missing_ok=True)
    _print_summary(out, manifest)
    return manifest


def _print_summary(out: Path, m: dict) -> None:
    print(f"cache: {m['num_images']} images, {m['num_captions']} captions at {m['size']} px in {out}")
    if m["skipped"]:
        print("  skipped: " + ", ".join(f"{n} {reason}" for reason, n in sorted(m["skipped"].items())))
    if m["converted"]:
        print("  repaired: " + ", ".join(f"{n} {what}" for what, n in sorted(m["converted"].items())))


def save_paired(data: PairedData, out_dir, *, size: int | None = None, source=None) -> dict:
    """Write already-decoded images (e.g. the shapes world) as a cache; resized if size differs."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").unlink(missing_ok=True)  # incomplete until the new manifest is written
    n, s = data.num_images, data.images.shape[1]
    size = size or s
    order = np.argsort(data.caption_image, kind="stable")
    # the captions of image i are order[starts[i] : starts[i + 1]]
    starts = np.searchsorted(data.caption_image[order], np.arange(n + 1))
    with open(out / "images.u8", "wb") as f:
        for i0 in range(0, n, 4096):
            block = np.asarray(data.images[i0 : i0 + 4096])  # [b, s, s, 3]
            if size != s:
                block = np.stack([decode_image(im, size)[0] for im in block])  # [b, size, size, 3]
            f.write(block.tobytes())
    splits = Counter()
    with open(out / "captions.jsonl", "w") as f:
        for i in range(n):
            attrs = data.attributes[i] if data.attributes is not None else {}
            split = attrs.get("split", "train")
            line = {"id": attrs.get("image_id", i), "split": split,
                    "captions": [data.captions[j] for j in order[starts[i] : starts[i + 1]]]}  # fmt: skip
            if data.attributes is not None:
                line["attributes"] = attrs
            f.write(json.dumps(line, default=_plain) + "\n")
            splits[split] += 1
    manifest = {
        "format": "miniclip-cache", "version": FORMAT_VERSION, "source": source or data.meta.get("source", "paired"),
        "size": size, "records_read": n, "num_images": n, "num_captions": len(data.captions),
        "splits": dict(splits), "skipped": {}, "converted": {}, "skipped_examples": [], "limit": None,
        "images_file": "images.u8", "captions_file": "captions.jsonl", "shape": [n, size, size, 3],
        "dtype": "uint8", "meta": data.meta,
    }  # fmt: skip
    _write_json_atomic(out / "manifest.json", manifest)
    return manifest


def _plain(obj):
    """json.dumps fallback for numpy scalars and arrays in attributes or meta."""
    return obj.tolist() if hasattr(obj, "tolist") else str(obj)


def load_cache(out_dir) -> PairedData:
    """A finished cache as PairedData: images a read-only memmap uint8 [N, S, S, 3].

    attributes: per image {"image_id", "split"} (COCO) or the stored attributes (shapes world).
    """
    out = Path(out_dir)
    if not (out / "manifest.json").exists():
        if (out / "progress.json").exists() or (out / "images.u8").exists():
            raise IncompleteCacheError(
                f"{out} is an incomplete cache (no manifest.json): its build was interrupted or is still "
                "running. Rerun the same `miniclip prepare ...` command to resume it."
            )
        raise FileNotFoundError(f"no cache in {out}: build one with `miniclip prepare`")
    m = json.loads((out / "manifest.json").read_text())
    if m.get("format") != "miniclip-cache" or m.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"{out}: cache format {m.get('format')} v{m.get('version')}, expected miniclip-cache v{FORMAT_VERSION}"
        )
    n, s = m["num_images"], m["size"]
    if n:
        images = np.memmap(out / m["images_file"], dtype=np.uint8, mode="r", shape=(n, s, s, 3))
    else:
        images = np.zeros((0, s, s, 3), dtype=np.uint8)
    captions, caption_image, attributes = [], [], []
    with open(out / m["captions_file"]) as f:
        for i, line in enumerate(f):
            row = json.loads(line)
            captions.extend(row["captions"])
            caption_image.extend([i] * len(row["captions"]))
            attributes.append(row.get("attributes", {"image_id": row["id"], "split": row["split"]}))
    if len(attributes) != n:
        raise ValueError(f"{out}: manifest says {n} images but captions.jsonl has {len(attributes)} lines")
    meta = dict(m.get("meta") or {})
    meta.update(cache=str(out), manifest=m)
    return PairedData(images, captions, np.asarray(caption_image, dtype=np.int64), attributes, meta)


# ------------------------------------------------------------------------------------------
# Batches


def normalise(images, device="cpu") -> torch.Tensor:
    """uint8 [B, S, S, 3] (numpy or tensor) -> float32 [B, 3, S, S] on device, normalised with CLIP_MEAN/STD."""
    if not torch.is_tensor(images):
        images = np.asarray(images)
        images = torch.from_numpy(images if images.flags.writeable else images.copy())
    x = images.to(device, non_blocking=True).permute(0, 3, 1, 2).contiguous()  # uint8 [B, 3, S, S]
    std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
    mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
    return torch.addcmul(-mean / std, x.float(), 1.0 / (255.0 * std))  # (x / 255 - mean) / std in one pass


def random_resized_crop(x: torch.Tensor, rng: np.random.Generator, scale=(0.8, 1.0), ratio=(3 / 4, 4 / 3)):
    """Per-sample random crop (area share in scale, aspect in ratio) resized back: [B, C, S, S] -> [B, C, S, S].

    One grid_sample call for the whole batch. The sampling grid is the affine grid of an axis-aligned
    crop (what F.affine_grid would give for theta = [[w, 0, cx], [0, h, cy]], built directly because it
    is cheaper). w, h > 0: it never flips, since captions speak of left and right.
    """
    b, _, s, _ = x.shape
    area = rng.uniform(*scale, b)
    aspect = np.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1]), b))
    w = np.minimum(np.sqrt(area * aspect), 1.0)  # crop width / image width
    h = np.minimum(np.sqrt(area / aspect), 1.0)
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
    on device, image_idx int64 [B] on the CPU).

    Epoch e is a seeded permutation of the images (those with at least one caption) and one random caption
    per image, so no batch holds two captions of one image. The batch of step k is a pure function of
    (seed, k): get(k) after a restart returns the same batch. len() = steps per epoch.
    augment=True: per-sample random resized crop (scale 0.8-1), no flips.
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
            raise ValueError(f"{n} captioned images make no batch of {batch_size} (drop_last={drop_last})")
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

    def iterate(self, start_step: int = 0, end_step: int | None = None):
        """Batches of steps start_step, start_step + 1, ... up to end_step (None: forever)."""
        step = start_step
        while end_step is None or step < end_step:
            yield self.get(step)
            step += 1

    def __iter__(self):
        """One epoch: steps 0 .. len(self) - 1."""
        return self.iterate(0, len(self))


def eval_batches(data: PairedData, batch_size: int = 256, device="cpu"):
    """Normalised images float32 [b, 3, S, S] on device, in order, no augmentation (for feature extraction)."""
    for i in range(0, data.num_images, batch_size):
        yield normalise(data.images[i : i + batch_size], device)


# ------------------------------------------------------------------------------------------
# Command line: `miniclip prepare coco ...` and `miniclip prepare shapes ...`


def add_prepare_parser(subparsers) -> None:
    """Add `prepare` (with `coco` and `shapes`) to the miniclip command line."""
    prepare = subparsers.add_parser("prepare", help="decode a data source once into an image cache")
    sub = prepare.add_subparsers(dest="dataset", required=True)

    coco = sub.add_parser("coco", help="COCO captions (Hugging Face Hub, official files or Karpathy JSON)")
    coco.add_argument("--source", choices=("hf", "coco", "karpathy"), default="hf")
    coco.add_argument("--hf-dataset", help="Hub id or builder (default Multimodal-Fatima/COCO_captions_<split>)")
    coco.add_argument("--hf-data-files", nargs="+", help="data files for --hf-dataset parquet (local copies)")
    coco.add_argument("--annotations", help="captions_train2017.json or captions_val2017.json (--source coco)")
    coco.add_argument("--images", help="image folder or zip (coco), root of train2014/val2014 (karpathy)")
    coco.add_argument("--karpathy-json", help="dataset_coco.json (--source karpathy)")
    coco.add_argument("--split", choices=("train", "val", "test"), help="default: train (coco: from the file name)")
    coco.add_argument("--limit", type=int, help="read at most N images")
    coco.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    coco.add_argument("--workers", type=int, help="decoder processes (default: all cores)")
    coco.add_argument("--out", required=True, help="cache folder")
    coco.set_defaults(func=_prepare_coco)

    shapes = sub.add_parser("shapes", help="the procedurally generated shapes world")
    shapes.add_argument("--n", type=int, default=50_000, help="number of images (default 50000)")
    shapes.add_argument("--size", type=int, default=32, help="image side in pixels (default 32)")
    shapes.add_argument("--seed", type=int, default=0)
    shapes.add_argument("--word-fraction", type=float, default=0.0, help="share of single objects with a word")
    shapes.add_argument("--rendition", default="normal", help="normal, sketch, texture, shade or background")
    shapes.add_argument("--out", required=True, help="cache folder")
    shapes.set_defaults(func=_prepare_shapes)


def _prepare_coco(args) -> int:
    from miniclip.data.coco import open_source

    try:
        records, desc = open_source(
            args.source, split=args.split, hf_dataset=args.hf_dataset, hf_data_files=args.hf_data_files,
            annotations=args.annotations, images=args.images, karpathy_json=args.karpathy_json, limit=args.limit,
        )  # fmt: skip
    except ValueError as err:
        raise SystemExit(f"miniclip prepare coco: {err}") from None
    build_cache(records, args.out, size=args.size, workers=args.workers, limit=args.limit, source=desc)
    return 0


def _prepare_shapes(args) -> int:
    from miniclip.data.shapes import generate

    data = generate(args.n, seed=args.seed, image_size=args.size, word_fraction=args.word_fraction,
                    rendition=args.rendition)  # fmt: skip
    m = save_paired(data, args.out, source={"name": "shapes", **data.meta})
    print(f"cache: {m['num_images']} shapes images, {m['num_captions']} captions at {m['size']} px in {args.out}")
    return 0
