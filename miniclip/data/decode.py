"""One sample, cleaned: its captions repaired or dropped, its image decoded to uint8 [size, size, 3] or refused.

    clean_captions(captions) -> (usable captions, Counter of repairs)
    decode_image(source, size) -> (uint8 [size, size, 3], "MODE -> RGB" or None)   raises BadSample(reason)
    process_chunk([(image, captions)], size)   what one decoder process of cache.build_cache does
    decoder_pool(workers)                      those processes, started at once

Decoding is the bottleneck of small-model CLIP training (one core decodes a few hundred COCO JPEGs/s).
Pillow's draft mode decodes a JPEG at 1/2, 1/4 or 1/8 scale straight from the DCT, so the resize starts from a
16x smaller image: about 2.5x cheaper in all. A bad sample never ends a run: its reason is counted in the manifest.
"""
from __future__ import annotations

import io
import multiprocessing
import os
import signal
import threading
import time
import warnings
import zipfile
from collections import Counter
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from miniclip.data.coco import ZipMember

MIN_SIDE = 8  # images smaller than this (pixels, either side) are skipped
MAX_CAPTION_CHARS = 1000  # longer captions are cut at a word boundary


def clean_captions(captions) -> tuple[list[str], Counter]:
    """Usable captions of one image, and a count of what was repaired or dropped: whitespace is collapsed, invalid
    UTF-8 bytes are removed, captions over MAX_CAPTION_CHARS are cut at a word boundary, empty ones are dropped."""
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
        if not any(ch.isprintable() and not ch.isspace() for ch in c):
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
        if mode.startswith("I;16") or a.max() > 255:
            a = a / 257.0
        elif mode == "F" and a.max() <= 1.0:  # floats in 0..1 (a TIFF from a float pipeline), not 0..255
            a = a * 255.0
        img = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "L")
    elif mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")  # composite transparent pixels onto white
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    return img.convert("RGB"), f"{mode} -> RGB"


def decode_image(source, size: int) -> tuple[np.ndarray, str | None]:
    """Decode, turn upright (EXIF), convert to RGB, resize the shorter side to size and centre-crop.
    Returns (uint8 [size, size, 3], "MODE -> RGB" or None); raises BadSample(reason) for missing, unreadable or
    too small images."""
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
    img = ImageOps.exif_transpose(img)  # phones store portraits sideways, with an EXIF orientation tag
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


def _init_worker() -> None:
    """Decoder process set-up: Ctrl-C is handled once, by the main process; exit if the parent process dies."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:  # an orphan is re-parented: the main process was killed (kill -9)
            time.sleep(0.5)
        os._exit(1)  # nobody will send us work again

    threading.Thread(target=watch, daemon=True).start()


def decoder_pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes for process_chunk, started at once. fork starts fastest and needs no `if __name__ ==
    "__main__":` guard in the calling script, but copying a process while other threads run (a streaming download
    has some) can deadlock the copy: then forkserver."""
    methods = multiprocessing.get_all_start_methods()
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and type(t).__name__ != "TMonitor"]
    if "fork" in methods and not others:  # (tqdm's TMonitor thread only sleeps)
        ctx = multiprocessing.get_context("fork")
    else:
        ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        if ctx.get_start_method() == "forkserver":
            ctx.set_forkserver_preload([__name__])  # import this module (numpy, PIL) once, not once per worker
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker)
    pool.submit(int).result()  # start the workers now, before this process starts any thread of its own
    return pool
