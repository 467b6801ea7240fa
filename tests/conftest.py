"""Shared fixtures: tiny COCO sources in each exact on-disk format (built in tmp_path), and one torch thread."""
from __future__ import annotations

import io
import json
import zipfile
import numpy as np
import pytest
import torch
from PIL import Image


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a test module (`pytestmark = pytest.mark.usefixtures("one_thread")`): tiny tensors gain
    nothing from threads, and a 2-thread pool collapses when another process takes a core."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def make_jpeg(seed: int, size=(64, 48), mode="RGB", quality=90) -> bytes:
    """A JPEG with varied content (a gradient, a block and noise), so that images differ."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), np.full_like(xx, rng.integers(256))], -1)
    x0, y0 = rng.integers(0, w // 2), rng.integers(0, h // 2)
    img[y0 : y0 + h // 3, x0 : x0 + w // 3] = rng.integers(0, 256, 3)
    img = np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).convert(mode).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


COCO_IDS = [9, 25, 30, 34, 36]  # official ids of the fixture images


@pytest.fixture
def coco_official(tmp_path) -> dict:
    """captions_train2017.json + train2017/ + train2017.zip, 5 images with 2-3 captions each."""
    folder = tmp_path / "train2017"
    folder.mkdir()
    images, annotations = [], []
    for k, image_id in enumerate(COCO_IDS):
        name = f"{image_id:012d}.jpg"
        (folder / name).write_bytes(make_jpeg(k, size=(64 + 8 * k, 48)))
        images.append({"id": image_id, "file_name": name, "width": 64 + 8 * k, "height": 48, "license": 1})
        for j in range(2 + k % 2):
            annotations.append({"id": 1000 + 10 * k + j, "image_id": image_id, "caption": f"image {image_id} caption {j}"})
    ann = tmp_path / "annotations" / "captions_train2017.json"
    ann.parent.mkdir()
    ann.write_text(json.dumps({"info": {}, "licenses": [], "images": images, "annotations": annotations}))
    zip_path = tmp_path / "train2017.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        zf.writestr("train2017/", "")
        for p in sorted(folder.iterdir()):
            zf.write(p, f"train2017/{p.name}")
    return {"annotations": ann, "folder": folder, "zip": zip_path, "ids": COCO_IDS, "captions": _group(annotations)}


def _group(annotations):
    out = {}
    for a in annotations:
        out.setdefault(a["image_id"], []).append(a["caption"])
    return out


KARPATHY = [  # (cocoid, Karpathy split, folder)
    (101, "train", "train2014"),
    (102, "restval", "val2014"),
    (103, "val", "val2014"),
    (104, "test", "val2014"),
    (105, "test", "val2014"),
    (106, "train", "train2014"),
]


@pytest.fixture
def coco_karpathy(tmp_path) -> dict:
    """dataset_coco.json + root/train2014, root/val2014 with six images over all four Karpathy splits."""
    root = tmp_path / "coco"
    entries = []
    for k, (cocoid, split, folder) in enumerate(KARPATHY):
        name = f"COCO_{folder}_{cocoid:012d}.jpg"
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / name).write_bytes(make_jpeg(100 + k))
        sentences = [{"raw": f"photo {cocoid} number {j}.", "tokens": ["photo", str(cocoid)], "sentid": j} for j in range(5)]
        entries.append({"filepath": folder, "filename": name, "split": split, "cocoid": cocoid, "imgid": k,
                        "sentids": list(range(5)), "sentences": sentences})  # fmt: skip
    path = tmp_path / "dataset_coco.json"
    path.write_text(json.dumps({"images": entries, "dataset": "coco"}))
    return {"json": path, "root": root}


HF_IDS = [7, 8, 11, 12]


@pytest.fixture
def coco_parquet(tmp_path) -> dict:
    """Both Hub layouts as local parquet files written through `datasets` with an Image feature."""
    import datasets

    jpegs = [make_jpeg(200 + k) for k in range(len(HF_IDS))]
    captions = [[f"hub image {i} says {j}" for j in range(2 + i % 3)] for i in HF_IDS]
    per_image = datasets.Dataset.from_dict({
        "filepath": ["val2014"] * len(HF_IDS),
        "cocoid": HF_IDS,
        "sentences_raw": captions,
        "image": [{"bytes": b, "path": None} for b in jpegs],
    }).cast_column("image", datasets.Image())  # fmt: skip
    per_image_path = tmp_path / "hub" / "per_image.parquet"
    per_image_path.parent.mkdir()
    per_image.to_parquet(str(per_image_path))
    rows = [(b, i, c) for b, i, caps in zip(jpegs, HF_IDS, captions) for c in caps]
    per_caption = datasets.Dataset.from_dict({
        "image": [{"bytes": b, "path": None} for b, _, _ in rows],
        "filename": [f"COCO_val2014_{i:012d}.jpg" for _, i, _ in rows],
        "cocoid": [i for _, i, _ in rows],
        "caption": [c for _, _, c in rows],
    }).cast_column("image", datasets.Image())  # fmt: skip
    per_caption_path = tmp_path / "hub" / "per_caption.parquet"
    per_caption.to_parquet(str(per_caption_path))
    return {"per_image": per_image_path, "per_caption": per_caption_path, "ids": HF_IDS, "captions": captions,
            "jpegs": jpegs}  # fmt: skip


@pytest.fixture
def tiny_pairs():
    """A PairedData of 40 shapes images at 32 px, for the loader tests."""
    from miniclip.data import shapes

    return shapes.generate(40, seed=3)


@pytest.fixture
def jpeg_factory():
    return make_jpeg

