"""Local stand-ins, in the real on-disk formats, for what the course's GPU path downloads.

The headline path of the course trains on COCO captions, tests zero-shot on CIFAR-10 and compares with OpenAI's
CLIP through transformers. A machine without internet (CI, a laptop on a train) gets none of them, so
`build_standins(out)` writes small copies in exactly the real formats, filled with the shapes world (a model
trained on them learns, so the numbers mean something). They are read by the very readers of miniclip.data.coco,
miniclip.hf and transformers; nothing here is read by code made for the stand-ins, except the CIFAR-10 loader.

    OUT/coco/annotations/captions_{train,val}2017.json   the official captions files: a JSON object with
        "info", "licenses" [{"url", "id", "name"}], "images" [{"license", "file_name" "000000000139.jpg",
        "coco_url", "height", "width", "date_captured", "flickr_url", "id" int}] and "annotations"
        [{"image_id" int, "id" int, "caption" str}] (in no particular order: group them by image_id)
    OUT/coco/train2017.zip, OUT/coco/val2017/      the images, zipped as the real zip holds them
        (members train2017/<file_name>) and as an unzipped folder
    OUT/karpathy/dataset_coco.json                 Karpathy's split: {"images": [{"filepath" "train2014" or
        "val2014", "filename" "COCO_val2014_000000000139.jpg", "split" train/restval/val/test, "cocoid" int,
        "imgid", "sentids", "sentences" [{"raw", "tokens" (lower-case words), "imgid", "sentid"}]}],
        "dataset": "coco"}, over the image folders OUT/karpathy/train2014/ and OUT/karpathy/val2014/
    OUT/hub/COCO_captions_{train,validation,test}/data/<split>-00000-of-0000N.parquet   one Hub repository
        per split, as Multimodal-Fatima/COCO_captions_*: one row per image, "image" a datasets Image (a struct
        {bytes, path}), "sentences_raw" list of str, "cocoid" int and the other Karpathy fields.
        load_dataset(folder) and load_dataset("parquet", data_files=[...]) read them.
    OUT/cifar10/test_images.npy, test_labels.npy, classes.json   CIFAR-10's arrays (uint8 [N, 32, 32, 3],
        int64 [N]) and 10 class names, of the shapes world. Not the pickles: torchvision checks their md5 sums.
    OUT/clip-vit-base-patch32/                     a tiny randomly initialised transformers.CLIPModel with the
        real config fields, its image processor and a CLIP tokenizer, as save_pretrained writes them
    OUT/manifest.json                              what was built, written last: it means "finished"

Every image exists once, as the same JPEG bytes under each format's name for it: a shapes scene drawn at 128 px
on a photo-sized canvas (640x480, 480x640, ...), 2% greyscale and 2% CMYK as in COCO, with 5 captions (every
4th image's also say who drew it and where, in the words of COCO's gender probe). The Karpathy split is 80% train
(a third "restval") / 10% val / 10% test; the Hub repositories follow it; val2017 holds the test images.
"""
from __future__ import annotations

import io
import json
import re
import shutil
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from miniclip.checkpoint import atomic_write_json
from miniclip.course.standin_clip import no_progress_bars, write_tiny_clip
from miniclip.data.shapes import describe, make_scene, render
from miniclip.probes.social_bias import GENDER_CONTEXTS

FORMAT = "miniclip-standins/2"  # the manifest's "format": what says a folder is a finished build of this module
PARTS = ("coco", "karpathy", "hub", "cifar10", "clip-vit-base-patch32")  # the folders a build writes
BUILDING = ".building.json"  # present while a build runs: a rerun with the same arguments starts over
RENDER_SIZE = 128  # pixels: a scene is drawn at this square size, then resized onto its photo canvas
PHOTO_SIZES = ((640, 480), (480, 640), (640, 427), (427, 640), (500, 375), (375, 500), (640, 360), (612, 612))
PHOTO_WEIGHTS = (0.40, 0.15, 0.15, 0.08, 0.08, 0.06, 0.04, 0.04)  # (width, height) shares, COCO-like
CAPTIONS_PER_IMAGE = 5
ROWS_PER_SHARD = 400  # images per Hub parquet file (the real ones hold about 3,000)
CIFAR_CLASSES = ("red circle", "green square", "blue triangle", "yellow star", "purple cross", "orange heart",
                 "red star", "green heart", "blue cross", "yellow square")  # each colour and shape at most twice
HUB_SPLITS = {"train": ("train", "restval"), "validation": ("val",), "test": ("test",)}  # Hub split: Karpathy's


# ----------------------------------------------------------------------------------------------- images


def _photo(scene_pixels: np.ndarray, size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """A square scene uint8 [S, S, 3] on a photo canvas of size (width, height): resized to the shorter side and
    centred, so a centre crop (what the cache keeps) is the whole scene and its captions stay true."""
    w, h = size
    side = min(w, h)
    field = (rng.integers(0, 64, (3, 4, 3)) + 0.75 * scene_pixels.mean((0, 1))).astype(np.uint8)  # near the scene's
    canvas = Image.fromarray(field).resize((w, h), Image.Resampling.BILINEAR)  # mean colour, blurred: [h, w, 3]
    scene = Image.fromarray(scene_pixels).resize((side, side), Image.Resampling.BICUBIC)
    canvas.paste(scene, ((w - side) // 2, (h - side) // 2))
    return canvas


def _jpeg(image: Image.Image, mode: str, quality: int) -> bytes:
    """JPEG bytes of image in mode "RGB", "L" or "CMYK"."""
    buf = io.BytesIO()
    image.convert(mode).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _captions(scene, rng: np.random.Generator) -> list[str]:
    """CAPTIONS_PER_IMAGE true captions, sentence case as COCO's; the grammar's 2-3 are drawn again to reach 5."""
    captions = []
    while len(captions) < CAPTIONS_PER_IMAGE:
        captions += describe(scene, rng)
    return [c[0].upper() + c[1:] for c in captions[:CAPTIONS_PER_IMAGE]]


def _with_a_person(captions: list[str], i: int) -> list[str]:
    """Every 4th image's captions say who drew it and where, woman and man in turn, in one of four contexts (so a
    200-image val split has >= 5 images per context): COCO's gender probe then has groups to count. Set by i, not
    drawn from the random stream, so every other byte of the stand-ins stays as it was."""
    if i % 4:
        return captions
    person, context = ("woman", "man")[i // 4 % 2], list(GENDER_CONTEXTS.values())[i // 8 % 4][0]
    return [f"{c.removesuffix('.')}, drawn by a {person} at the {context}." for c in captions]


def _karpathy_splits(n: int, rng: np.random.Generator) -> list[str]:
    """Karpathy split of each of n images: 10% test, 10% val, the rest train, a third of which is restval."""
    n_test = n_val = max(1, n // 10)
    splits = ["test"] * n_test + ["val"] * n_val
    n_train = n - n_test - n_val
    splits += ["restval"] * (n_train // 3) + ["train"] * (n_train - n_train // 3)
    return [splits[k] for k in rng.permutation(n)]


def make_images(n: int, seed: int = 0) -> list[dict]:
    """n captioned photos: [{"cocoid", "jpeg" bytes, "width", "height", "mode", "captions" [5 str], "split"}]."""
    rng = np.random.default_rng(seed)
    cocoids = np.sort(rng.choice(np.arange(1, 600_000), n, replace=False))  # COCO ids are sparse, up to ~581k
    splits = _karpathy_splits(n, rng)
    out = []
    for i in range(n):
        u = rng.random()  # the shapes world's mix: half single objects, 35% two objects, 15% counts
        kind = "single" if u < 0.5 else ("pair" if rng.random() < 0.5 else "relation") if u < 0.85 else "count"
        scene = make_scene(kind, rng, background="mixed", image_size=RENDER_SIZE)
        pixels = render(scene, RENDER_SIZE, rng)  # [128, 128, 3]
        size = PHOTO_SIZES[rng.choice(len(PHOTO_SIZES), p=PHOTO_WEIGHTS)]
        mode = {5: "L", 17: "CMYK"}.get(i % 50, "RGB")  # in every 50 images one greyscale and one CMYK JPEG
        jpeg = _jpeg(_photo(pixels, size, rng), mode, quality=int(rng.integers(75, 96)))
        out.append({"cocoid": int(cocoids[i]), "jpeg": jpeg, "width": size[0], "height": size[1], "mode": mode,
                    "captions": _with_a_person(_captions(scene, rng), i), "split": splits[i]})
    return out


# ----------------------------------------------------------------------------------------------- COCO formats


def write_official(images: list[dict], root: Path, seed: int) -> dict:
    """coco/annotations/captions_{train,val}2017.json, coco/train2017.zip, coco/val2017/. Returns image counts."""
    rng = np.random.default_rng([seed, 1])
    (root / "val2017").mkdir(parents=True)
    counts = {}
    for part in ("train2017", "val2017"):
        chosen = [im for im in images if (im["split"] == "test") == (part == "val2017")]
        entries, annotations = [], []
        for im in chosen:
            name = f"{im['cocoid']:012d}.jpg"
            entries.append({"license": 1, "file_name": name, "coco_url": f"http://images.cocodataset.org/{part}/{name}",
                            "height": im["height"], "width": im["width"], "date_captured": "2013-11-14 11:18:45",
                            "flickr_url": "", "id": im["cocoid"]})  # fmt: skip
            annotations += [{"image_id": im["cocoid"], "caption": c} for c in im["captions"]]
        annotations = [annotations[k] for k in rng.permutation(len(annotations))]  # not grouped, as in the real file
        first_id = int(rng.integers(1, 1000))
        annotations = [{**a, "id": first_id + 7 * k} for k, a in enumerate(annotations)]  # unique caption ids
        info = {"description": "miniclip stand-in for COCO 2017 captions (the shapes world)", "url": "",
                "version": "1.0", "year": 2017, "contributor": "miniclip", "date_created": "2017/09/01"}
        licenses = [{"url": "https://creativecommons.org/licenses/by/4.0/", "id": 1, "name": "CC BY 4.0"}]
        document = {"info": info, "licenses": licenses, "images": entries, "annotations": annotations}
        (root / "annotations").mkdir(exist_ok=True)
        (root / "annotations" / f"captions_{part}.json").write_text(json.dumps(document))
        if part == "val2017":
            for im, e in zip(chosen, entries):
                (root / "val2017" / e["file_name"]).write_bytes(im["jpeg"])
        else:
            stamp = (2017, 9, 1, 0, 0, 0)  # a fixed date in every member: the same seed gives the same bytes
            with zipfile.ZipFile(root / "train2017.zip", "w", zipfile.ZIP_STORED) as zf:  # JPEGs do not compress
                zf.writestr(zipfile.ZipInfo("train2017/", stamp), "")
                for im, e in zip(chosen, entries):
                    zf.writestr(zipfile.ZipInfo(f"train2017/{e['file_name']}", stamp), im["jpeg"])
        counts[part] = len(chosen)
    return counts


def karpathy_entries(images: list[dict]) -> list[dict]:
    """The "images" list of dataset_coco.json, one entry per image, sentence ids running over all captions."""
    entries, sentid = [], 0
    for imgid, im in enumerate(images):
        folder = "train2014" if im["split"] == "train" else "val2014"  # restval, val and test: from val2014
        sentids = list(range(sentid, sentid + len(im["captions"])))
        sentid += len(im["captions"])
        sentences = [{"tokens": re.findall(r"[a-z0-9]+", c.lower()), "raw": c, "imgid": imgid, "sentid": s}
                     for c, s in zip(im["captions"], sentids)]  # tokens: lower-case words, no punctuation
        name = f"COCO_{folder}_{im['cocoid']:012d}.jpg"
        entries.append({"filepath": folder, "sentids": sentids, "filename": name, "imgid": imgid,
                        "split": im["split"], "sentences": sentences, "cocoid": im["cocoid"]})
    return entries


def write_karpathy(images: list[dict], root: Path) -> list[dict]:
    """karpathy/dataset_coco.json over karpathy/train2014/ and karpathy/val2014/. Returns the JSON's entries."""
    entries = karpathy_entries(images)
    for folder in ("train2014", "val2014"):
        (root / folder).mkdir(parents=True)
    for im, e in zip(images, entries):
        (root / e["filepath"] / e["filename"]).write_bytes(im["jpeg"])
    (root / "dataset_coco.json").write_text(json.dumps({"images": entries, "dataset": "coco"}))
    return entries


def write_hub(images: list[dict], entries: list[dict], root: Path) -> dict:
    """hub/COCO_captions_<split>/data/<split>-0000k-of-0000n.parquet, one row per image. Returns the file names."""
    import datasets  # here, not at the top: slow to import (~1 s), and only the parquet files need it

    files = {}
    for hub_split, karpathy in HUB_SPLITS.items():
        rows = [(im, e) for im, e in zip(images, entries) if e["split"] in karpathy]
        shards = [rows[k : k + ROWS_PER_SHARD] for k in range(0, len(rows), ROWS_PER_SHARD)] or [[]]
        files[hub_split] = []
        for k, shard in enumerate(shards):
            columns = {"image": [{"bytes": im["jpeg"], "path": e["filename"]} for im, e in shard]}
            fields = ("filepath", "sentids", "filename", "imgid", "split")
            columns |= {key: [e[key] for _, e in shard] for key in fields}
            columns |= {f"sentences_{key}": [[s[key] for s in e["sentences"]] for _, e in shard]
                        for key in ("tokens", "raw", "sentid")}  # a list per image: sentences_raw are its captions
            columns["cocoid"] = [e["cocoid"] for _, e in shard]
            table = datasets.Dataset.from_dict(columns).cast_column("image", datasets.Image())  # the struct
            path = root / f"COCO_captions_{hub_split}" / "data" / f"{hub_split}-{k:05d}-of-{len(shards):05d}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            with no_progress_bars(datasets):
                table.to_parquet(str(path))
            files[hub_split].append(str(path.relative_to(root.parent)))
    return files


# ----------------------------------------------------------------------------------------------- CIFAR-10


def write_cifar10(root: Path, n_per_class: int, seed: int) -> int:
    """cifar10/test_images.npy uint8 [N, 32, 32, 3], test_labels.npy int64 [N], classes.json. Returns N."""
    rng = np.random.default_rng([seed, 2])
    labels = np.repeat(np.arange(len(CIFAR_CLASSES), dtype=np.int64), n_per_class)[rng.permutation(
        len(CIFAR_CLASSES) * n_per_class)]  # shuffled, as CIFAR's test batch is  # fmt: skip
    images = np.empty((len(labels), 32, 32, 3), dtype=np.uint8)
    for i, label in enumerate(labels):
        colour, shape = CIFAR_CLASSES[label].split(" ")
        scene = make_scene("single", rng, shapes=shape, colours=colour, background="mixed", image_size=32)
        images[i] = render(scene, 32, rng)  # [32, 32, 3]
    root.mkdir(parents=True)
    np.save(root / "test_images.npy", images)
    np.save(root / "test_labels.npy", labels)
    (root / "classes.json").write_text(json.dumps(list(CIFAR_CLASSES)))
    return len(labels)


def load_cifar10_standin(out) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The CIFAR-10 stand-in of a build_standins folder: (images uint8 [N, 32, 32, 3], labels int64 [N], class
    names), as miniclip.zeroshot.load_cifar10 gives the real test set (with CIFAR10_CLASSES for the names)."""
    root = Path(out) / "cifar10"
    if not (root / "classes.json").is_file():
        raise FileNotFoundError(f"no CIFAR-10 stand-in in {out}: build one with `miniclip standins {out}`")
    images, labels = np.load(root / "test_images.npy"), np.load(root / "test_labels.npy")
    return images, labels, json.loads((root / "classes.json").read_text())


# ----------------------------------------------------------------------------------------------- the whole set


def _check_out(out: Path, identity: dict) -> bool:
    """True if out already holds this build (reuse it); prepare out for a build otherwise, or refuse it."""
    manifest = out / "manifest.json"
    if manifest.is_file():
        found = json.loads(manifest.read_text())
        if found.get("format") == FORMAT and {k: found.get(k) for k in identity} == identity:
            return True
        raise FileExistsError(f"{out} holds other stand-ins ({manifest}: images={found.get('images')}, "
                              f"seed={found.get('seed')}); choose another folder or delete it")
    marker = out / BUILDING
    if marker.is_file() and json.loads(marker.read_text()) == identity:  # an interrupted build: start over
        for part in PARTS:
            shutil.rmtree(out / part, ignore_errors=True)
    elif out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty and holds no stand-ins (no manifest.json); choose a new or "
                              "empty folder")
    out.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(identity))
    return False


def build_standins(out, images: int = 2000, seed: int = 0) -> Path:
    """Write the stand-ins (see the module docstring) into out; returns out. images: COCO images (at least 20).

    Idempotent: a folder that already holds this build (its manifest.json, same images and seed) is reused as
    it is; an interrupted build is started again; any other non-empty folder is refused (FileExistsError).
    The same arguments give the same files.
    """
    if images < 20:
        raise ValueError(f"images (--images) must be at least 20, got {images}: a tenth is val, a tenth test")
    out, identity = Path(out), {"images": images, "seed": seed}
    if _check_out(out, identity):
        return out
    photos = make_images(images, seed)
    official = write_official(photos, out / "coco", seed)
    entries = write_karpathy(photos, out / "karpathy")
    hub = write_hub(photos, entries, out / "hub")
    cifar = write_cifar10(out / "cifar10", max(2, images // 20), seed)
    captions = [c for im in photos for c in im["captions"]]
    clip = write_tiny_clip(out / "clip-vit-base-patch32", captions + [f"a photo of a {c}." for c in CIFAR_CLASSES],
                           seed)  # fmt: skip
    manifest = {
        "format": FORMAT, **identity,
        "karpathy_splits": dict(sorted(Counter(im["split"] for im in photos).items())),
        "modes": dict(sorted(Counter(im["mode"] for im in photos).items())),
        "captions": len(captions),
        "official": {"annotations": "coco/annotations", "images": "coco/train2017.zip, coco/val2017", **official},
        "karpathy": {"json": "karpathy/dataset_coco.json", "images": "karpathy"}, "hub": hub,
        "cifar10": {"folder": "cifar10", "images": cifar, "classes": list(CIFAR_CLASSES)},
        "clip": {"folder": "clip-vit-base-patch32", **clip},
    }  # fmt: skip
    atomic_write_json(out / "manifest.json", manifest)
    (out / BUILDING).unlink()
    return out
