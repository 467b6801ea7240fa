"""The offline stand-ins (miniclip.course.standins): each file in its real format, read by the real readers."""
import io
import json
import re
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from miniclip.__main__ import main
from miniclip.course import standins
from miniclip.course.standins import build_standins, load_cifar10_standin
from miniclip.data.coco import hf_records, karpathy_records, official_records
from miniclip.data.sources import load_pairs

pytestmark = pytest.mark.usefixtures("one_thread")
N = 60  # images: 48 train (16 of them restval), 6 val, 6 test


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    return build_standins(tmp_path_factory.mktemp("standins") / "out", images=N, seed=0)


def _json(path):
    return json.loads(Path(path).read_text())


def _karpathy(out):
    return {e["cocoid"]: e for e in _json(out / "karpathy" / "dataset_coco.json")["images"]}


def test_official_captions_files_have_the_real_schema(out):
    karpathy, n_images = _karpathy(out), 0
    for part in ("train2017", "val2017"):
        doc = _json(out / "coco" / "annotations" / f"captions_{part}.json")
        assert set(doc) == {"info", "licenses", "images", "annotations"}
        assert {"description", "version", "year"} <= set(doc["info"])
        assert {"url", "id", "name"} <= set(doc["licenses"][0])
        for im in doc["images"]:
            assert {"id", "file_name", "width", "height", "license", "coco_url"} <= set(im)
            assert isinstance(im["id"], int) and im["file_name"] == f"{im['id']:012d}.jpg"
            assert (im["width"], im["height"]) in standins.PHOTO_SIZES
        ids = [im["id"] for im in doc["images"]]
        assert len(set(ids)) == len(ids)
        ann_ids = [a["id"] for a in doc["annotations"]]
        assert len(set(ann_ids)) == len(ann_ids) and all(isinstance(i, int) for i in ann_ids)
        assert all(set(a) == {"id", "image_id", "caption"} for a in doc["annotations"])
        assert all(isinstance(a["caption"], str) for a in doc["annotations"])
        per_image = {i: sum(a["image_id"] == i for a in doc["annotations"]) for i in ids}
        assert set(per_image.values()) == {5}  # five captions per image, as COCO
        assert [a["image_id"] for a in doc["annotations"]] != sorted(a["image_id"] for a in doc["annotations"])
        # val2017 holds the Karpathy test images
        assert {karpathy[i]["split"] == "test" for i in ids} == {part == "val2017"}
        n_images += len(ids)
    assert n_images == N
    val_names = sorted(im["file_name"] for im in _json(out / "coco/annotations/captions_val2017.json")["images"])
    assert sorted(p.name for p in (out / "coco" / "val2017").iterdir()) == val_names
    train = _json(out / "coco/annotations/captions_train2017.json")["images"]
    with zipfile.ZipFile(out / "coco" / "train2017.zip") as zf:
        assert zf.namelist() == ["train2017/"] + [f"train2017/{im['file_name']}" for im in train]


def test_karpathy_json_has_the_real_schema(out):
    doc = _json(out / "karpathy" / "dataset_coco.json")
    assert set(doc) == {"images", "dataset"} and doc["dataset"] == "coco"
    splits = {}
    for e in doc["images"]:
        assert {"filepath", "filename", "split", "cocoid", "sentences", "sentids", "imgid"} <= set(e)
        assert e["filepath"] == ("train2014" if e["split"] == "train" else "val2014")
        assert e["filename"] == f"COCO_{e['filepath']}_{e['cocoid']:012d}.jpg"
        assert (out / "karpathy" / e["filepath"] / e["filename"]).is_file()
        assert len(e["sentences"]) == 5 and [s["sentid"] for s in e["sentences"]] == e["sentids"]
        for s in e["sentences"]:
            assert isinstance(s["raw"], str) and s["tokens"] == re.findall(r"[a-z0-9]+", s["raw"].lower())
        splits[e["split"]] = splits.get(e["split"], 0) + 1
    assert splits == {"train": 32, "restval": 16, "val": 6, "test": 6}


def test_hub_parquet_files_have_the_per_image_layout(out):
    karpathy = _karpathy(out)
    for hub_split, wanted in (("train", {"train", "restval"}), ("validation", {"val"}), ("test", {"test"})):
        files = sorted((out / "hub" / f"COCO_captions_{hub_split}" / "data").glob("*.parquet"))
        assert [f.name for f in files] == [f"{hub_split}-00000-of-00001.parquet"]
        table = pq.read_table(files[0])
        schema = table.schema
        assert str(schema.field("image").type) == "struct<bytes: binary, path: string>"
        assert str(schema.field("sentences_raw").type) == "list<element: string>"
        assert str(schema.field("cocoid").type) == "int64"
        features = json.loads(schema.metadata[b"huggingface"])["info"]["features"]
        assert features["image"]["_type"] == "Image"  # what makes `datasets` see an Image column
        rows = table.to_pylist()
        assert {karpathy[r["cocoid"]]["split"] for r in rows} == wanted
        for r in rows[:3]:
            assert r["sentences_raw"] == [s["raw"] for s in karpathy[r["cocoid"]]["sentences"]]
            path = out / "karpathy" / karpathy[r["cocoid"]]["filepath"] / karpathy[r["cocoid"]]["filename"]
            assert r["image"]["bytes"] == path.read_bytes()  # the same photograph in every format


def test_images_are_real_jpegs_some_greyscale_or_cmyk(out):
    modes = {}
    for path in sorted((out / "karpathy").glob("*/*.jpg")):
        with Image.open(path) as im:
            assert im.format == "JPEG" and im.size in standins.PHOTO_SIZES
            modes[im.mode] = modes.get(im.mode, 0) + 1
    assert modes == {"RGB": N - 3, "L": 2, "CMYK": 1}


def test_a_finished_folder_is_reused_and_another_refused(out, tmp_path):
    manifest = out / "manifest.json"
    before = manifest.stat().st_mtime_ns
    assert build_standins(out, images=N, seed=0) == out and manifest.stat().st_mtime_ns == before
    with pytest.raises(FileExistsError, match=r"holds other stand-ins.*images=60, seed=0.*another folder"):
        build_standins(out, images=N, seed=1)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty and holds no stand-ins"):
        build_standins(tmp_path / "mine", images=N)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    with pytest.raises(ValueError, match="at least 20"):
        build_standins(tmp_path / "small", images=5)


def test_an_interrupted_build_starts_over_and_the_same_seed_gives_the_same_bytes(out, tmp_path):
    again = tmp_path / "again"
    (again / "coco").mkdir(parents=True)
    (again / "coco" / "half-written.json").write_text("{")
    (again / standins.BUILDING).write_text(json.dumps({"images": N, "seed": 0}))
    build_standins(again, images=N, seed=0)
    assert not (again / "coco" / "half-written.json").exists() and not (again / standins.BUILDING).exists()
    for name in ("coco/annotations/captions_train2017.json", "coco/train2017.zip", "karpathy/dataset_coco.json",
                 "cifar10/test_images.npy", "clip-vit-base-patch32/model.safetensors", "manifest.json"):
        assert (again / name).read_bytes() == (out / name).read_bytes(), name


def _prepare(*args) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "read 48 images for split 'train', but the Karpathy split has 113,287"
        return main(["prepare", "coco", *map(str, args), "--workers", "1"])


def test_miniclip_prepare_reads_all_three_sources(out, tmp_path):
    ann = out / "coco" / "annotations"
    assert _prepare("--source", "coco", "--annotations", ann / "captions_train2017.json",
                    "--images", out / "coco" / "train2017.zip", "--size", "32", "--out", tmp_path / "official") == 0
    assert _prepare("--source", "coco", "--annotations", ann / "captions_val2017.json",
                    "--images", out / "coco" / "val2017", "--size", "32", "--out", tmp_path / "official_val") == 0
    assert _prepare("--source", "karpathy", "--karpathy-json", out / "karpathy" / "dataset_coco.json",
                    "--images", out / "karpathy", "--split", "test", "--size", "32",
                    "--out", tmp_path / "karpathy") == 0
    train_files = sorted((out / "hub" / "COCO_captions_train" / "data").glob("*.parquet"))
    assert _prepare("--source", "hf", "--hf-dataset", "parquet", "--hf-data-files", *train_files,
                    "--size", "32", "--out", tmp_path / "hub") == 0
    assert _prepare("--source", "hf", "--hf-dataset", out / "hub" / "COCO_captions_validation", "--split", "val",
                    "--size", "32", "--out", tmp_path / "hub_val") == 0  # a local copy of a Hub repository
    counts = {name: _json(tmp_path / name / "manifest.json") for name in
              ("official", "official_val", "karpathy", "hub", "hub_val")}
    assert {k: m["num_images"] for k, m in counts.items()} == {"official": 54, "official_val": 6, "karpathy": 6,
                                                                "hub": 48, "hub_val": 6}
    assert {k: m["num_captions"] for k, m in counts.items()} == {k: 5 * m["num_images"] for k, m in counts.items()}
    assert counts["official"]["converted"] == {"L -> RGB": 2, "CMYK -> RGB": 1} and not counts["official"]["skipped"]
    # the same photograph decodes to the same pixels whichever format it came from
    test = load_pairs(str(tmp_path / "karpathy"), "train")
    val2017 = load_pairs(str(tmp_path / "official_val"), "train")
    assert sorted(test.images.reshape(6, -1).sum(1)) == sorted(val2017.images.reshape(6, -1).sum(1))


def test_the_readers_see_every_image_of_each_format(out):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the sizes differ from the real splits'
        official = list(official_records(out / "coco/annotations/captions_train2017.json", out / "coco/train2017.zip"))
        karpathy = list(karpathy_records(out / "karpathy/dataset_coco.json", out / "karpathy", None))
        files = [str(p) for p in sorted((out / "hub").glob("*/data/*.parquet"))]
        hub = list(hf_records("train", "parquet", data_files=files))
    assert len(official) == 54 and len(karpathy) == N and len(hub) == N
    assert {r.image_id for r in hub} == {r.image_id for r in karpathy}
    assert all(len(r.captions) == 5 for r in official + karpathy + hub)


def test_miniclip_train_coco_small_runs_on_a_stand_in_cache(out, tmp_path):
    data = tmp_path / "coco64"
    assert _prepare("--source", "karpathy", "--karpathy-json", out / "karpathy" / "dataset_coco.json",
                    "--images", out / "karpathy", "--split", "train", "--size", "64", "--out", data / "train") == 0
    assert _prepare("--source", "hf", "--hf-dataset", out / "hub" / "COCO_captions_validation", "--split", "val",
                    "--size", "64", "--out", data / "val") == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # evaluating on only 6 held-out images
        status = main(["train", "--preset", "coco-small", "--data", str(data), "--steps", "2", "--batch-size", "8",
                       "--eval-every", "0", "--device", "cpu", "--out", str(tmp_path / "run")])
    assert status == 0
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 2 and rows[-1]["val_num_images"] == 6 and np.isfinite(rows[-1]["val_loss"])


def test_cifar10_stand_in(out, tmp_path):
    images, labels, classes = load_cifar10_standin(out)
    assert images.dtype == np.uint8 and images.shape == (30, 32, 32, 3)
    assert labels.dtype == np.int64 and sorted(np.bincount(labels)) == [3] * 10
    assert classes == list(standins.CIFAR_CLASSES) and len(classes) == 10
    assert labels[:10].tolist() != sorted(labels[:10].tolist())  # shuffled, as CIFAR's test batch
    red = images[labels == classes.index("red circle")].astype(float)
    blue = images[labels == classes.index("blue triangle")].astype(float)
    assert (red[..., 0] - red[..., 2]).max() > 100 and (blue[..., 2] - blue[..., 0]).max() > 100  # colours drawn
    with pytest.raises(FileNotFoundError, match="miniclip standins"):
        load_cifar10_standin(tmp_path)


def test_tiny_clip_is_a_real_transformers_clip_that_miniclip_loads(out):
    import transformers

    from miniclip.hf import from_transformers

    folder = out / "clip-vit-base-patch32"
    config = _json(folder / "config.json")
    assert config["model_type"] == "clip" and config["architectures"] == ["CLIPModel"]
    assert config["text_config"]["eos_token_id"] == 2 and config["vision_config"]["patch_size"] == 8
    processor = transformers.CLIPProcessor.from_pretrained(folder)
    tok = processor.tokenizer
    assert tok.eos_token == "<|endoftext|>"
    assert tok.eos_token_id == len(tok) - 1 == config["text_config"]["vocab_size"] - 1  # CLIP's: the highest id
    assert tok.convert_ids_to_tokens(tok("a red circle.")["input_ids"]) == [
        "<|startoftext|>", "a</w>", "red</w>", "circle</w>", ".</w>", "<|endoftext|>"]
    model, tokenizer = from_transformers(str(folder))
    photo = Image.open(io.BytesIO(next((out / "coco" / "val2017").iterdir()).read_bytes()))
    captions = ["A photo of a red circle.", "two blue stars"]
    pixels = tokenizer.image_transform([photo])  # [1, 3, 32, 32]
    assert pixels.shape == (1, 3, 32, 32)
    with torch.no_grad():
        ours, _ = model(pixels, tokenizer.encode(captions))
        hf = transformers.CLIPModel.from_pretrained(folder).eval()
        theirs = hf(**processor(text=captions, images=[photo], return_tensors="pt", padding=True)).logits_per_image
    assert ours.shape == (1, 2) and torch.allclose(ours, theirs, atol=1e-3), (ours, theirs)


def test_the_command_builds_and_reports_a_bad_folder(tmp_path, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    assert main(["standins", str(tmp_path / "full"), "--images", "20"]) == 2
    assert "miniclip standins:" in capsys.readouterr().err and (tmp_path / "full" / "x").exists()
    assert main(["standins", str(tmp_path / "new"), "--images", "20", "--seed", "3"]) == 0
    assert _json(tmp_path / "new" / "manifest.json")["seed"] == 3 and "stand-ins in" in capsys.readouterr().out
