"""The image cache: decode every image once into a uint8 file, then feed batches straight from it.

    build_cache(records, out_dir, size)   decode + resize + centre-crop in worker processes, resumable
    save_paired(data, out_dir)            the same files from already-decoded images (the shapes world)
    load_cache(out_dir) -> PairedData     images as a read-only memmap [N, S, S, 3]

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

from miniclip.data import PairedData
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
