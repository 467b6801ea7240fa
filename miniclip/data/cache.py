"""The image cache: decode every image once into a uint8 file, then feed batches straight from it.

    build_cache(records, out_dir, size)   decode + resize + centre-crop in worker processes, resumable
    save_paired(data, out_dir)            the same files from already-decoded images
    build_shapes_cache(out_dir, n, seed)  the shapes world, generated and written one chunk at a time, resumable
    load_cache(out_dir) -> PairedData     images as a read-only memmap [N, S, S, 3]

On disk (out_dir/):
    images.u8        uint8 [N, S, S, 3], append-only while building
    captions.jsonl   one line per image: {"id", "split", "captions"[, "attributes"]}
    progress.json    while building: records consumed, images written, bytes of captions.jsonl (+ shapes: rng state)
    manifest.json    written last and atomically: without it the cache is incomplete
    .miniclip.lock   only while a process builds there: one builder per folder (miniclip.locks.run_lock)

An out_dir holding another cache (another source, size or limit) is refused; the same build resumes.
Decoding (decode.py) is the slow part, so it runs in worker processes and is paid once: after that a batch
is a memory gather (batches.py), not a decode.
"""
from __future__ import annotations

import json
import os
from collections import Counter, deque
from collections.abc import Sequence
from itertools import islice
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from miniclip.checkpoint import atomic_write_json, sweep_temporary_files, to_json
from miniclip.data import PairedData, shapes
from miniclip.data.coco import Record, ZipMember
from miniclip.data.decode import decode_image, decoder_pool, process_chunk
from miniclip.locks import run_lock

FORMAT_VERSION = 1
MAX_EXAMPLES = 1000  # skipped samples listed by file name and id in the manifest (counts are always complete)
SUMMARY_EXAMPLES = 10  # ... and in the console summary
BUILD_ONLY = ("captions_bytes", "rng_state")  # what progress.json keeps for resuming and the manifest does not


class IncompleteCacheError(RuntimeError):
    """A cache folder without manifest.json: a build was interrupted (or is still running)."""


# ------------------------------------------------------------------------------------------
# Building, resuming and loading


def _refuse_another(out: Path, found: dict, expected: dict, what: str) -> None:
    """FileExistsError unless the cache `found` in out (a manifest or progress) is the build `expected` describes."""
    differ = []  # what differs, "key: theirs, not ours", looking one level into dicts such as meta
    for k, ours in expected.items():
        theirs = found.get(k)
        if isinstance(theirs, dict) and isinstance(ours, dict):
            differ += [f"{k}.{j}: {theirs.get(j)!r}, not {ours.get(j)!r}" for j in sorted({*theirs, *ours})
                       if theirs.get(j) != ours.get(j)]
        elif theirs != ours:
            differ.append(f"{k}: {theirs!r}, not {ours!r}")
    if differ:
        raise FileExistsError(f"{out} already holds {what} of another build ({'; '.join(differ[:4])}); "
                              "delete that folder or choose another --out")


class _Writer:
    """Appends decoded chunks to images.u8 / captions.jsonl and commits each one in progress.json.

    A chunk counts only once progress.json (replaced atomically) says so; every write first truncates the files
    to the committed lengths, so a chunk interrupted half-way (Ctrl-C, kill -9) is redone. identity: what makes
    a build this build ({"source", "size"[, "meta"]}); a partial cache of another is refused.
    """

    def __init__(self, out: Path, identity: dict):
        self.out, self.frame = out, identity["size"] ** 2 * 3  # bytes per image
        self.progress = out / "progress.json"
        sweep_temporary_files(out)  # what a killed write of progress.json left behind
        if self.progress.exists():
            self.state = json.loads(self.progress.read_text())
            _refuse_another(out, self.state, identity, "a partial cache")
        else:
            self.state = {"format": "miniclip-cache", "version": FORMAT_VERSION, **identity, "records_read": 0,
                          "num_images": 0, "num_captions": 0, "captions_bytes": 0, "splits": {}, "skipped": {},
                          "converted": {}, "skipped_examples": []}  # fmt: skip
        self.images = open(out / "images.u8", "ab")
        self.captions = open(out / "captions.jsonl", "ab")
        self._truncate()
        atomic_write_json(self.progress, self.state)

    def _truncate(self):
        self.images.truncate(self.state["num_images"] * self.frame)
        self.captions.truncate(self.state["captions_bytes"])

    def commit(self, start: int, result: list[tuple], rows: list[dict], **state) -> None:
        """Write the chunk of records start, start + 1, ... (a chunk committed twice is written once).

        result: from process_chunk; rows: [{"id", "split"[, "file"][, "attributes"]}] (what captions.jsonl keeps,
        and "file" for reports); state: what else a resumed build needs (the shapes world's random state).
        """
        st = self.state
        if start < st["records_read"]:
            return  # already committed
        assert start == st["records_read"], "chunks must be committed in order"
        self._truncate()  # drop anything a previous, interrupted write left behind
        skipped, converted, splits = Counter(st["skipped"]), Counter(st["converted"]), Counter(st["splits"])
        examples, n_images, n_captions = list(st["skipped_examples"]), st["num_images"], st["num_captions"]
        for (pixels, caps, events, reason), row in zip(result, rows):
            if reason is not None:
                skipped[reason] += 1
                if len(examples) < MAX_EXAMPLES:
                    examples.append({"image_id": row["id"], "file": row.get("file"), "reason": reason})
                continue
            converted.update(events)  # repairs of the samples kept
            line = {"id": row["id"], "split": row["split"], "captions": caps}
            if "attributes" in row:
                line["attributes"] = row["attributes"]
            self.images.write(pixels.tobytes())
            self.captions.write((to_json(line, indent=None) + "\n").encode())
            n_images, n_captions = n_images + 1, n_captions + len(caps)
            splits[row["split"]] += 1
        self.images.flush()
        self.captions.flush()
        st.update(records_read=st["records_read"] + len(rows), num_images=n_images, num_captions=n_captions,
                  captions_bytes=self.captions.tell(), skipped=dict(skipped), converted=dict(converted),
                  splits=dict(splits), skipped_examples=examples, **state)  # fmt: skip
        atomic_write_json(self.progress, st)  # the chunk is committed only now

    def finish(self, **extra) -> dict:
        """Close the files and write manifest.json (the state, plus extra): from now on the cache is complete."""
        self.close()
        st = self.state
        manifest = {k: v for k, v in st.items() if k not in BUILD_ONLY}
        manifest.update(extra, images_file="images.u8", captions_file="captions.jsonl",
                        shape=[st["num_images"], st["size"], st["size"], 3], dtype="uint8")  # fmt: skip
        atomic_write_json(self.out / "manifest.json", manifest)  # LAST
        self.progress.unlink(missing_ok=True)
        return manifest

    def close(self):
        self.images.close()
        self.captions.close()


def _finished(out: Path, expected: dict) -> dict | None:
    """The manifest of the finished build `expected` in out; None if out holds no finished cache."""
    if not (out / "manifest.json").exists():
        return None
    manifest = json.loads((out / "manifest.json").read_text())
    _refuse_another(out, manifest, expected, "a cache")
    print(f"cache: {out} is already complete ({manifest['num_images']} images)")
    return manifest


def _file_name(image) -> str | None:
    """What names an image in reports: its path or zip member (None for bytes from a stream)."""
    if isinstance(image, ZipMember):
        return image.name
    return os.fspath(image) if isinstance(image, (str, os.PathLike)) else None


def build_cache(records, out_dir, size: int = 64, workers: int | None = None, limit: int | None = None, *,
                source=None, chunk_size: int = 64) -> dict:
    """Decode records once into out_dir (see the module docstring); returns the manifest.

    records: Record(image, captions, split, image_id)s (or 4-tuples), or a PairedData (see save_paired).
    size: output side in pixels. workers: decoder processes (default: all cores; 1 = in this process).
    limit: read at most this many records. source: a description stored in the manifest; a rerun with the same
    source and size resumes an interrupted build. Another cache in out_dir: FileExistsError.
    """
    if isinstance(records, PairedData):
        return save_paired(records, out_dir, size=size, source=source)
    identity = {"source": json.loads(to_json(source)), "size": size}  # as it will read back from progress.json
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if (manifest := _finished(out, {**identity, "limit": limit})) is not None:
        return manifest
    with run_lock(out, activity="progress.json", doing="built"):  # one builder per folder
        return _decode_into(out, identity, records, workers, limit, chunk_size)


def _decode_into(out: Path, identity: dict, records, workers: int | None, limit: int | None, chunk_size: int) -> dict:
    """build_cache once out is checked and locked: decode the records not yet committed, then the manifest."""
    size, writer = identity["size"], _Writer(out, identity)
    done = writer.state["records_read"]
    records = iter(records)
    if limit is not None and done > limit:  # more records than asked for are there already: no cache of `limit`
        writer.close()
        raise FileExistsError(f"{out} holds an unfinished build of {done} records, more than --limit {limit}: resume "
                              "it with the --limit it was started with (or none), or delete the folder")
    if done:
        print(f"cache: resuming {out} after {done} records ({writer.state['num_images']} images)")
        next(islice(records, done, done), None)  # skip (consume) the `done` records already in the cache
    if limit is not None:
        records = islice(records, max(0, limit - done))

    workers = workers or os.cpu_count() or 1
    pool = decoder_pool(workers) if workers > 1 else None
    pending: deque = deque()  # (first record, future or result, rows) of chunks in flight, oldest first
    bar = tqdm(total=limit, initial=done, desc="decoding", unit="img", leave=False)

    def drain(keep: int):
        while len(pending) > keep:
            start, job, rows = pending[0]
            writer.commit(start, job.result() if pool else job, rows)
            pending.popleft()  # only once committed: an interrupted commit is redone
            bar.update(len(rows))

    try:
        start = done
        while chunk := [Record(*r) for r in islice(records, chunk_size)]:
            work = [(r.image, r.captions) for r in chunk]
            rows = [{"id": r.image_id, "split": r.split, "file": _file_name(r.image)} for r in chunk]
            job = pool.submit(process_chunk, work, size) if pool else process_chunk(work, size)
            pending.append((start, job, rows))
            start += len(chunk)
            drain(keep=2 * workers if pool else 0)  # bounded: a streamed source is never read far ahead
        drain(keep=0)
        bar.total = bar.n  # the source may hold fewer records than `limit`: the bar ends at 100%, not short of it
        bar.refresh()
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
    st = writer.state
    if not st["records_read"]:  # an empty file, or a split the file does not have
        raise ValueError(f"{out}: the source gave no records (an empty captions file, or a split it does not hold), "
                         f"so the cache would be empty. Check the file and --split, then delete {out} and run again")
    if not st["num_images"]:  # e.g. val2017's annotations with train2017's images
        why = ", ".join(f"{n} {reason}" for reason, n in sorted(st["skipped"].items()))
        raise ValueError(f"{out}: none of the {st['records_read']} records gave a usable image ({why}), so the cache "
                         "would be empty. Check that the images belong to the captions (`prepare coco --images`), "
                         f"then delete {out} and run again")
    manifest = writer.finish(limit=limit)
    _print_summary(out, manifest)
    return manifest


def _print_summary(out: Path, m: dict) -> None:
    print(f"cache: {m['num_images']} images, {m['num_captions']} captions at {m['size']} px in {out}")
    if m["skipped"]:
        print("  skipped: " + ", ".join(f"{n} {reason}" for reason, n in sorted(m["skipped"].items())))
        for e in m["skipped_examples"][:SUMMARY_EXAMPLES]:
            print(f"    {e['file'] or '(no file)'} (id {e['image_id']}): {e['reason']}")
        if sum(m["skipped"].values()) > SUMMARY_EXAMPLES:
            print(f"    ... the first {MAX_EXAMPLES} are listed in {out / 'manifest.json'}")
    if m["converted"]:
        print("  repaired: " + ", ".join(f"{n} {what}" for what, n in sorted(m["converted"].items())))


def _commit_paired(writer: _Writer, data: PairedData, start: int, size: int, **state) -> None:
    """Commit data's images as the records start, start + 1, ... (resized to size if needed). An image's id is
    its attributes' "image_id", else its record number; state: more to remember in progress.json."""
    order = np.argsort(data.caption_image, kind="stable")  # the captions of image i: order[starts[i]:starts[i + 1]]
    starts = np.searchsorted(data.caption_image[order], np.arange(data.num_images + 1))
    images = np.asarray(data.images)  # [b, s, s, 3]: one block, read into memory
    if size != images.shape[1]:
        images = np.stack([decode_image(im, size)[0] for im in images])  # [b, size, size, 3]
    result, rows = [], []
    for i, pixels in enumerate(images):
        attrs = data.attributes[i] if data.attributes is not None else {}
        row = {"id": attrs.get("image_id", start + i), "split": attrs.get("split", "train")}
        rows.append(row if data.attributes is None else {**row, "attributes": attrs})
        result.append((pixels, [data.captions[j] for j in order[starts[i] : starts[i + 1]]], Counter(), None))
    writer.commit(start, result, rows, **state)


def _write_paired(out_dir, identity: dict, blocks) -> dict:
    """A cache of already-decoded pairs: blocks(progress state) yields (first record, PairedData, state to commit
    with it), starting at the first record not yet committed. Finished or another cache in out_dir: as build_cache."""
    identity = json.loads(to_json(identity))  # as it reads back from progress.json
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if (manifest := _finished(out, {**identity, "limit": None})) is not None:
        return manifest
    with run_lock(out, activity="progress.json", doing="built"):  # one builder per folder
        writer = _Writer(out, identity)
        try:
            for start, block, state in blocks(writer.state):
                _commit_paired(writer, block, start, identity["size"], **state)
        finally:
            writer.close()
        return writer.finish(limit=None)


def save_paired(data: PairedData, out_dir, *, size: int | None = None, source=None) -> dict:
    """Write already-decoded images as a cache, resized if size differs; returns the manifest. A rerun of the
    same data resumes or does nothing; another cache in out_dir: FileExistsError."""
    size = size or data.images.shape[1]

    def blocks(progress: dict):
        for i0 in range(progress["records_read"], data.num_images, 4096):
            yield i0, data.subset(np.arange(i0, min(i0 + 4096, data.num_images))), {}

    identity = {"source": source or data.meta.get("source", "paired"), "size": size, "meta": data.meta}
    return _write_paired(out_dir, identity, blocks)


def build_shapes_cache(out_dir, n: int, seed: int = 0, *, chunk_size: int = 5000, **options) -> dict:
    """The shapes world shapes.generate(n, seed, **options) written into a cache chunk_size images at a time
    (peak memory: one chunk); returns the manifest. The files are byte for byte those of save_paired(generate(n,
    seed, **options), source={"name": "shapes", **its meta}): the world is one random stream, and progress.json
    keeps the Generator's state after each committed chunk, so a rerun continues the stream where it stopped.
    """
    meta = {**shapes.generate(0, seed, **options).meta, "n": n}  # what generate(n, ...) reports; checks options

    def chunks(progress: dict):
        rng, done = np.random.default_rng(seed), progress["records_read"]
        if done:
            if "rng_state" not in progress:  # a partial cache written by save_paired(generate(n)) before
                raise IncompleteCacheError(f"{out_dir}: this partial shapes cache cannot be resumed (progress.json "
                                           "has no random state); delete the folder and run the command again")
            rng.bit_generator.state = progress["rng_state"]
            print(f"cache: resuming {out_dir} after {done} of {n} shapes images")
        for start in tqdm(range(done, n, chunk_size), desc="shapes", unit="chunk", leave=False, disable=n < 20000):
            chunk = shapes.generate(min(chunk_size, n - start), rng, **options)  # the next images of the stream
            yield start, chunk, {"rng_state": rng.bit_generator.state}

    identity = {"source": {"name": "shapes", **meta}, "size": meta["image_size"], "meta": meta}
    return _write_paired(out_dir, identity, chunks)


class CacheAttributes(Sequence):
    """The per-image attributes of a cache, each parsed from its line of captions.jsonl when asked for (as dicts,
    200,000 scenes take more memory than their pixels). attributes[i] is a dict, attributes[i:j] another view."""

    def __init__(self, path: Path, offsets: np.ndarray):
        self.path, self.offsets = path, offsets  # int64 [N]: where the line of each image starts in the file

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return CacheAttributes(self.path, self.offsets[i])
        with open(self.path, "rb") as f:
            f.seek(self.offsets[i])
            return _attributes(json.loads(f.readline()))

    def __iter__(self):
        with open(self.path, "rb") as f:  # one open file for the whole loop
            for offset in self.offsets:
                f.seek(offset)
                yield _attributes(json.loads(f.readline()))

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and len(self) == len(other) and list(self) == list(other)


def _attributes(row: dict) -> dict:
    """An image's attributes from its captions.jsonl row: the stored ones (shapes world) or {"image_id", "split"}."""
    return row.get("attributes", {"image_id": row["id"], "split": row["split"]})


def load_cache(out_dir) -> PairedData:
    """A finished cache as PairedData: images a read-only memmap uint8 [N, S, S, 3], attributes per image
    {"image_id", "split"} (COCO) or the stored ones (shapes world), read from disk when asked for."""
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
    if (found := (out / m["images_file"]).stat().st_size) != n * s * s * 3:  # a copy cut short (a full disk)
        raise ValueError(f"{out / m['images_file']} holds {found:,} bytes, not the {n * s * s * 3:,} of {n} images of "
                         f"{s} px: it is damaged; copy it again, or delete {out} and build the cache again")
    if n:
        images = np.memmap(out / m["images_file"], dtype=np.uint8, mode="r", shape=(n, s, s, 3))
    else:
        images = np.zeros((0, s, s, 3), dtype=np.uint8)
    captions, counts, offsets, position = [], [], [], 0
    with open(out / m["captions_file"], "rb") as f:
        for line in f:
            row_captions = json.loads(line)["captions"]
            captions.extend(row_captions)
            counts.append(len(row_captions))
            offsets.append(position)
            position += len(line)
    if len(offsets) != n:
        raise ValueError(f"{out}: manifest says {n} images but captions.jsonl has {len(offsets)} lines")
    caption_image = np.repeat(np.arange(n, dtype=np.int64), counts)  # [C]: the image of each caption
    attributes = CacheAttributes(out / m["captions_file"], np.asarray(offsets, dtype=np.int64))
    meta = dict(m.get("meta") or {})
    meta.update(cache=str(out), manifest=m)
    return PairedData(images, captions, caption_image, attributes, meta)
