"""The image cache: build (parallel, resumable, robust to bad samples), load, batches, CLI."""
import io
import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from miniclip.cli import main
from miniclip.data import CLIP_MEAN, CLIP_STD, PairedData, shapes
from miniclip.data.batches import Batches
from miniclip.data.cache import IncompleteCacheError, build_cache, load_cache, save_paired
from miniclip.data.decode import clean_captions, decode_image
from miniclip.data.coco import Record, official_records

MEAN = np.array(CLIP_MEAN, dtype=np.float32).reshape(1, 3, 1, 1)
STD = np.array(CLIP_STD, dtype=np.float32).reshape(1, 3, 1, 1)


def _records(jpeg_factory, n=23):
    return [Record(jpeg_factory(k, size=(40 + k, 30 + 2 * k)), [f"caption {k} a", f"caption {k} b"], "train", 500 + k)
            for k in range(n)]  # fmt: skip


def _files(d):
    return {name: (d / name).read_bytes() for name in ("images.u8", "captions.jsonl", "manifest.json")}


# ------------------------------------------------------------------------------------------ build / load


def test_build_and_load_official(tmp_path, coco_official):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        records = official_records(coco_official["annotations"], coco_official["zip"])
        manifest = build_cache(records, tmp_path / "c", size=16, workers=1, source={"name": "fixture"})
    assert manifest["num_images"] == 5 and manifest["skipped"] == {} and manifest["size"] == 16
    data = load_cache(tmp_path / "c")
    assert isinstance(data.images, np.memmap) and not data.images.flags.writeable
    assert data.images.shape == (5, 16, 16, 3) and data.images.dtype == np.uint8
    assert [a["image_id"] for a in data.attributes] == coco_official["ids"]
    assert {a["split"] for a in data.attributes} == {"train"}
    for i, image_id in enumerate(coco_official["ids"]):
        assert data.captions_of(i) == coco_official["captions"][image_id]
        path = coco_official["folder"] / f"{image_id:012d}.jpg"
        assert np.array_equal(data.images[i], decode_image(str(path), 16)[0])
    assert not (tmp_path / "c" / "progress.json").exists()
    # a rerun of a complete cache does nothing
    assert build_cache([], tmp_path / "c", size=16, workers=1, source={"name": "fixture"}) == json.loads(
        (tmp_path / "c" / "manifest.json").read_text())


def test_decode_resizes_shorter_side_and_centre_crops():
    img = np.random.default_rng(0).integers(0, 256, (40, 80, 3), dtype=np.uint8)  # H=40, W=80
    img[:, 20:60] = (200, 100, 50)  # the centre square
    out, event = decode_image(img, 20)
    assert out.shape == (20, 20, 3) and event is None
    assert np.abs(out[:, 2:-2].astype(int) - (200, 100, 50)).max() <= 2
    # the same as resizing the whole image (shorter side -> 20) and cropping the middle
    reference = np.asarray(Image.fromarray(img).resize((40, 20), Image.Resampling.BICUBIC).crop((10, 0, 30, 20)))
    assert np.abs(out.astype(int) - reference).max() <= 3


def test_parallel_equals_serial(tmp_path, jpeg_factory):
    records = _records(jpeg_factory)
    build_cache(records, tmp_path / "serial", size=16, workers=1, chunk_size=4)
    build_cache(records, tmp_path / "parallel", size=16, workers=2, chunk_size=4)
    assert _files(tmp_path / "serial") == _files(tmp_path / "parallel")


def test_resume_after_interruption_is_byte_identical(tmp_path, jpeg_factory, capsys):
    records = _records(jpeg_factory)
    build_cache(records, tmp_path / "whole", size=16, workers=2, chunk_size=4)

    def interrupted(k):
        for i, r in enumerate(records):
            if i == k:
                raise RuntimeError("killed")
            yield r

    out = tmp_path / "resumed"
    with pytest.raises(RuntimeError, match="killed"):
        build_cache(interrupted(13), out, size=16, workers=2, chunk_size=4)
    with pytest.raises(IncompleteCacheError, match="incomplete.*miniclip prepare"):
        load_cache(out)
    progress = json.loads((out / "progress.json").read_text())
    assert progress["records_read"] == 12 and progress["num_images"] == 12
    # a kill in the middle of a chunk leaves bytes past the last commit: they must be dropped
    with open(out / "images.u8", "ab") as f:
        f.write(b"\x07" * 1000)
    with open(out / "captions.jsonl", "a") as f:
        f.write('{"id": 99, "spl')
    with pytest.raises(RuntimeError, match="killed"):  # a second interruption, one chunk later
        build_cache(interrupted(19), out, size=16, workers=1, chunk_size=4)
    capsys.readouterr()
    build_cache(records, out, size=16, workers=2, chunk_size=4)
    assert "resuming" in capsys.readouterr().out
    assert _files(out) == _files(tmp_path / "whole")


_SLOW_BUILD = """
import signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C raises, even if a background launcher ignored it
sys.path[:0] = {paths!r}
from conftest import make_jpeg
from miniclip.data.cache import build_cache
from miniclip.data.coco import Record

def records():
    for k in range(40):
        if k >= 12:
            time.sleep(0.2)  # slow enough to be interrupted mid-build
        yield Record(make_jpeg(k), ["caption %d" % k], "train", k)

build_cache(records(), {out!r}, size=16, workers={workers}, chunk_size=4)
"""


@pytest.mark.parametrize("sig, workers", [("SIGINT", 2), ("SIGKILL", 1)])
def test_ctrl_c_and_kill_then_resume(tmp_path, jpeg_factory, sig, workers):
    """A real process, interrupted by Ctrl-C (SIGINT) or kill -9, resumes to the same bytes."""
    import os
    import signal
    import subprocess
    import sys
    import time

    records = [Record(jpeg_factory(k), [f"caption {k}"], "train", k) for k in range(40)]
    build_cache(records, tmp_path / "whole", size=16, workers=1, chunk_size=4)
    out = tmp_path / "interrupted"
    code = _SLOW_BUILD.format(paths=[os.path.dirname(__file__), os.getcwd()], out=str(out), workers=workers)
    log = open(tmp_path / "log.txt", "w")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while time.time() < deadline:
        time.sleep(0.05)
        try:
            if json.loads((out / "progress.json").read_text())["records_read"] >= 12:
                break
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            pass
    proc.send_signal(getattr(signal, sig))
    proc.wait(timeout=60)
    log.close()
    assert proc.returncode != 0 and not (out / "manifest.json").exists()
    if sig == "SIGINT":
        assert "run the same command again to resume" in (tmp_path / "log.txt").read_text()
    with pytest.raises(IncompleteCacheError):
        load_cache(out)
    assert 12 <= json.loads((out / "progress.json").read_text())["records_read"] < 40
    build_cache(records, out, size=16, workers=2, chunk_size=4)
    assert _files(out) == _files(tmp_path / "whole")


def test_resume_refuses_another_source(tmp_path, jpeg_factory):
    def interrupted():
        yield from _records(jpeg_factory, 5)
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        build_cache(interrupted(), tmp_path, size=16, workers=1, chunk_size=2, source="a")
    with pytest.raises(FileExistsError, match=r"holds a partial cache of another build \(source: 'a', not 'b'\).*--out"):
        build_cache([], tmp_path, size=16, workers=1, source="b")


def test_resume_refuses_a_smaller_limit_sweeps_stale_files_and_a_cut_images_file_is_named(tmp_path, jpeg_factory):
    """An unfinished build of 8 records resumed with --limit 4 used to finish a "limit 4" cache of 8 images; a killed
    write of progress.json left its temporary file in the finished cache; a cut images.u8 failed inside numpy."""
    records, out = _records(jpeg_factory, 12), tmp_path / "cache"

    def interrupted():
        yield from records[:8]
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        build_cache(interrupted(), out, size=16, workers=1, chunk_size=4)
    orphan = out / ".progress.json.abc123.tmp"
    orphan.write_text("{")
    with pytest.raises(FileExistsError, match="8 records, more than --limit 4"):
        build_cache(records, out, size=16, workers=1, chunk_size=4, limit=4)
    assert build_cache(records, out, size=16, workers=1, chunk_size=4, limit=10)["num_images"] == 10
    assert not orphan.exists()
    with open(out / "images.u8", "r+b") as f:
        f.truncate(10 * 16 * 16 * 3 - 1)
    with pytest.raises(ValueError, match=r"images.u8 holds 7,679 bytes.*damaged"):
        load_cache(out)


def _png(array, mode=None):
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, "PNG") if mode else Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def bad_inputs(tmp_path, jpeg_factory):
    """An official-format captions file whose images and captions include every kind of bad sample."""
    folder = tmp_path / "val2017"
    folder.mkdir()
    good_jpeg = jpeg_factory(1)
    rgba = np.zeros((20, 30, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 128
    palette = Image.fromarray(np.full((20, 20, 3), (0, 200, 0), dtype=np.uint8)).convert("P", palette=Image.ADAPTIVE)
    pbuf = io.BytesIO()
    palette.save(pbuf, "PNG")
    cmyk, grey = io.BytesIO(), io.BytesIO()
    Image.new("CMYK", (24, 24), (0, 255, 255, 0)).save(cmyk, "JPEG")
    Image.new("L", (24, 24), 90).save(grey, "JPEG")
    long_caption = " ".join(["word"] * 400)  # 1999 chars
    files = {  # id: (file name, bytes or None for missing, captions, expected skip reason or None)
        1: ("good.jpg", good_jpeg, ["a good image"], None),
        2: ("cmyk.jpg", cmyk.getvalue(), ["a cmyk image"], None),
        3: ("grey.jpg", grey.getvalue(), ["a grey image"], None),
        4: ("palette.png", pbuf.getvalue(), ["a palette image"], None),
        5: ("rgba.png", _png(rgba), ["an rgba image"], None),
        6: ("deep.png", _png((np.arange(600).reshape(20, 30) * 100).astype(np.uint16)), ["a 16-bit image"], None),
        7: ("some_empty.jpg", jpeg_factory(7), ["", "   ", "the one good caption"], None),
        8: ("long.jpg", jpeg_factory(8), [long_caption], None),
        9: ("latin1.jpg", jpeg_factory(9), ["NONUTF8"], None),
        10: ("eight.png", _png(np.full((8, 9, 3), 77, dtype=np.uint8)), ["just big enough"], None),
        11: ("truncated.jpg", good_jpeg[: len(good_jpeg) // 2], ["cut short"], "unreadable (truncated or corrupt)"),
        # An error page saved under an image name (bytes(range(256)) would do on Pillow 10+, but Pillow 9 reads it as
        # a truncated image of some format):
        12: ("garbage.jpg", b"<html><body>404 Not Found</body></html>\n" * 20, ["not an image"],
             "unreadable (not an image)"),
        13: ("dot.png", _png(np.zeros((1, 1, 3), dtype=np.uint8)), ["a 1x1 image"], "too small (< 8 px)"),
        14: ("missing.jpg", None, ["never there"], "missing file"),
        15: ("no_caption.jpg", jpeg_factory(15), ["", " "], "no usable caption"),
        16: ("no_annotations.jpg", jpeg_factory(16), [], "no usable caption"),
    }
    images, annotations = [], []
    for image_id, (name, data, captions, _) in files.items():
        if data is not None:
            (folder / name).write_bytes(data)
        images.append({"id": image_id, "file_name": name})
        annotations += [{"id": 100 * image_id + j, "image_id": image_id, "caption": c} for j, c in enumerate(captions)]
    text = json.dumps({"images": images, "annotations": annotations}).encode()
    ann = tmp_path / "captions_val2017.json"
    ann.write_bytes(text.replace(b"NONUTF8", b"caf\xe9 au lait \xff"))  # Latin-1 bytes: not UTF-8
    return ann, folder, files


def test_bad_samples_are_repaired_or_reported(tmp_path, bad_inputs, capsys):
    ann, folder, files = bad_inputs
    records = official_records(ann, folder, limit=len(files))
    manifest = build_cache(records, tmp_path / "c", size=16, workers=2, chunk_size=3)
    data = load_cache(tmp_path / "c")
    good = [i for i, f in files.items() if f[3] is None]
    bad = {i: f[3] for i, f in files.items() if f[3] is not None}
    assert [a["image_id"] for a in data.attributes] == good  # every good sample survives, in order
    assert {e["image_id"]: e["reason"] for e in manifest["skipped_examples"]} == bad
    assert sum(manifest["skipped"].values()) == len(bad)
    assert manifest["skipped"]["no usable caption"] == 2
    deep_mode = Image.open(io.BytesIO(files[6][1])).mode  # "I;16" (Pillow 10 and later) or "I" (Pillow 9)
    for mode in ("CMYK", "L", "P", "RGBA", deep_mode):
        assert manifest["converted"][f"{mode} -> RGB"] == 1
    assert manifest["converted"]["empty caption dropped"] == 2
    assert manifest["converted"]["caption truncated (> 1000 chars)"] == 1
    assert manifest["converted"]["non-UTF-8 bytes removed from caption"] == 1
    caps = {a["image_id"]: data.captions_of(i) for i, a in enumerate(data.attributes)}
    assert caps[7] == ["the one good caption"]
    assert len(caps[8][0]) <= 1000 and caps[8][0].endswith("word") and caps[8][0].count("word") == 200
    assert caps[9] == ["caf au lait"]
    # conversions are sound: the red, half-transparent RGBA lands on white; CMYK cyan-free stays red
    pixel = {a["image_id"]: data.images[i][8, 8].astype(int) for i, a in enumerate(data.attributes)}
    assert pixel[5][0] > 240 and 100 < pixel[5][1] < 160  # red at alpha 0.5 over white
    assert pixel[2][0] > 200 and pixel[2][1] < 60
    assert pixel[3][0] == pixel[3][1] == pixel[3][2]
    summary = capsys.readouterr().out
    assert "skipped:" in summary and "missing file" in summary and "repaired:" in summary


def test_clean_captions_bytes():
    good, events = clean_captions([b"ok \xff bytes", "  spaced\n  out ", "x" * 1500, "lone \ud800 surrogate", 7])
    assert good == ["ok bytes", "spaced out", "x" * 1000, "lone surrogate"]
    assert events["non-UTF-8 bytes removed from caption"] == 2 and events["non-text caption dropped"] == 1


def test_save_paired_roundtrip(tmp_path, tiny_pairs):
    save_paired(tiny_pairs, tmp_path / "s")
    data = load_cache(tmp_path / "s")
    assert np.array_equal(data.images, tiny_pairs.images)
    assert data.captions == tiny_pairs.captions
    assert np.array_equal(data.caption_image, tiny_pairs.caption_image)
    assert data.attributes == tiny_pairs.attributes
    assert data.meta["seed"] == 3
    big = build_cache(tiny_pairs, tmp_path / "big", size=48)  # a PairedData is accepted too (and resized)
    assert big["shape"] == [40, 48, 48, 3]


def test_load_cache_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="miniclip prepare"):
        load_cache(tmp_path / "nothing")


# ------------------------------------------------------------------------------------------ batches


def _tokens(data):
    c = len(data.captions)
    return torch.arange(c).unsqueeze(1).repeat(1, 5)  # [C, 5]: row j starts with j


def test_batches_shapes_normalisation_and_pairs(tiny_pairs):
    batches = Batches(tiny_pairs, _tokens(tiny_pairs), 8, seed=1)
    assert len(batches) == 5
    images, tokens, image_idx = batches.get(0)
    assert images.shape == (8, 3, 32, 32) and images.dtype == torch.float32 and images.is_contiguous()
    assert tokens.shape == (8, 5) and image_idx.dtype == torch.int64 and image_idx.shape == (8,)
    expected = (tiny_pairs.images[image_idx.numpy()].transpose(0, 3, 1, 2) / 255.0 - MEAN) / STD
    assert np.allclose(images.numpy(), expected, atol=1e-5)
    # each row's caption belongs to that row's image
    assert np.array_equal(tiny_pairs.caption_image[tokens[:, 0].numpy()], image_idx.numpy())
    assert torch.equal(batches.caption_ids(0), tokens[:, 0])


def test_batches_epochs_and_determinism(tiny_pairs):
    batches = Batches(tiny_pairs, _tokens(tiny_pairs), 8, seed=1)
    for epoch in range(2):
        seen = np.concatenate([batches.get(epoch * 5 + b)[2].numpy() for b in range(5)])
        assert sorted(seen) == list(range(40))  # every image once per epoch, never twice in a batch
    again = Batches(tiny_pairs, _tokens(tiny_pairs), 8, seed=1)
    for step in (13, 2, 7, 13):  # any order, after a restart: the same batch
        a, b = batches.get(step), again.get(step)
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    other = Batches(tiny_pairs, _tokens(tiny_pairs), 8, seed=2)
    assert not torch.equal(other.get(0)[2], batches.get(0)[2])
    # captions vary between epochs (images have 2-3 captions)
    caps = [sorted(np.concatenate([batches.caption_ids(e * 5 + b).numpy() for b in range(5)])) for e in range(3)]
    assert caps[0] != caps[1] or caps[1] != caps[2]


def test_batches_drop_last_and_uncaptioned(tiny_pairs):
    assert len(Batches(tiny_pairs, _tokens(tiny_pairs), 16, drop_last=False)) == 3
    keep = tiny_pairs.caption_image != 0  # image 0 loses its captions
    data = PairedData(tiny_pairs.images, [c for c, k in zip(tiny_pairs.captions, keep) if k],
                      tiny_pairs.caption_image[keep])  # fmt: skip
    batches = Batches(data, _tokens(data), 13)
    assert len(batches) == 3
    assert 0 not in np.concatenate([batches.get(s)[2].numpy() for s in range(3)])


def test_augmentation_crops_but_never_flips():
    images = np.zeros((16, 32, 32, 3), dtype=np.uint8)
    images[:, :, :16] = (255, 0, 0)  # left half red
    images[:, :, 16:] = (0, 0, 255)  # right half blue
    data = PairedData(images, [f"c{i}" for i in range(16)], np.arange(16))
    batches = Batches(data, _tokens(data), 16, augment=True, seed=0)
    plain = Batches(data, _tokens(data), 16, augment=False)
    for step in range(3):
        x = batches.get(step)[0].numpy() * STD + MEAN  # back to 0..1, [B, 3, S, S]
        assert (x[:, 0, :, :6] > 0.9).all() and (x[:, 2, :, :6] < 0.1).all()  # left stays red
        assert (x[:, 2, :, -6:] > 0.9).all() and (x[:, 0, :, -6:] < 0.1).all()  # right stays blue
        assert not torch.allclose(batches.get(step)[0], plain.get(step)[0])
    boundary = (x[:, 0, 16] > 0.5).argmin(axis=1)  # where red ends, per sample: crops differ
    assert len(set(boundary.tolist())) > 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_batches_cuda(tiny_pairs):
    batches = Batches(tiny_pairs, _tokens(tiny_pairs), 8, device="cuda", augment=True)
    images, tokens, _ = batches.get(0)
    assert images.is_cuda and tokens.is_cuda and batches.images.is_cuda
    cpu = Batches(tiny_pairs, _tokens(tiny_pairs), 8, augment=True)
    assert torch.allclose(images.cpu(), cpu.get(0)[0], atol=1e-4)


# ------------------------------------------------------------------------------------------ CLI


def test_cli_prepare_shapes(tmp_path):
    assert main(["prepare", "shapes", "--n", "30", "--size", "32", "--seed", "4", "--word-fraction", "0.5",
                 "--out", str(tmp_path / "s")]) == 0  # fmt: skip
    data = load_cache(tmp_path / "s")
    assert data.images.shape == (30, 32, 32, 3)
    assert np.array_equal(data.images, shapes.generate(30, seed=4, word_fraction=0.5).images)
    assert data.attributes[0]["kind"] in shapes.KINDS


def test_cli_prepare_coco_all_sources(tmp_path, coco_official, coco_karpathy, coco_parquet, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["prepare", "coco", "--source", "coco", "--annotations", str(coco_official["annotations"]),
                     "--images", str(coco_official["zip"]), "--size", "16", "--workers", "1",
                     "--out", str(tmp_path / "official")]) == 0  # fmt: skip
        assert main(["prepare", "coco", "--source", "karpathy", "--karpathy-json", str(coco_karpathy["json"]),
                     "--images", str(coco_karpathy["root"]), "--split", "test", "--size", "16", "--workers", "1",
                     "--out", str(tmp_path / "karpathy")]) == 0  # fmt: skip
        for layout in ("per_image", "per_caption"):
            assert main(["prepare", "coco", "--source", "hf", "--hf-dataset", "parquet", "--hf-data-files",
                         str(coco_parquet[layout]), "--split", "val", "--limit", "3", "--size", "16",
                         "--workers", "1", "--out", str(tmp_path / layout)]) == 0  # fmt: skip
    assert load_cache(tmp_path / "official").num_images == 5
    karpathy = load_cache(tmp_path / "karpathy")
    assert [a["image_id"] for a in karpathy.attributes] == [104, 105] and len(karpathy.captions) == 10
    # the two Hub layouts give the same cache
    a, b = load_cache(tmp_path / "per_image"), load_cache(tmp_path / "per_caption")
    assert a.num_images == 3 and np.array_equal(a.images, b.images) and a.captions == b.captions
    assert a.meta["manifest"]["source"]["source"] == "hf"
    capsys.readouterr()
    assert main(["prepare", "coco", "--source", "coco", "--out", str(tmp_path / "x")]) == 2  # a user error: one line
    err = capsys.readouterr().err
    assert "needs annotations" in err and "Traceback" not in err


# ------------------------------------------------------------------------------------------ issue 13


def test_captions_without_a_visible_character_are_dropped():
    good, events = clean_captions(["\x00\x00\x00", "\x00 \x07", "a real one"])
    assert good == ["a real one"] and events["empty caption dropped"] == 2


def test_a_float_image_in_0_to_1_is_scaled_not_decoded_black():
    from PIL import Image

    from miniclip.data.decode import to_rgb
    ramp = np.tile(np.linspace(0, 1, 16, dtype=np.float32), (16, 1))  # [16, 16], mode "F"
    rgb, event = to_rgb(Image.fromarray(ramp, "F"))
    assert event == "F -> RGB" and np.asarray(rgb)[0, -1].tolist() == [255, 255, 255]  # was [1, 1, 1]: black


def test_exif_orientation_is_applied_before_resizing():
    stored = np.zeros((20, 40, 3), dtype=np.uint8)  # as stored: 40 wide, left half red, right half blue
    stored[:, :20], stored[:, 20:] = (255, 0, 0), (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation 6: display rotated 90 degrees clockwise (a phone held upright)
    buf = io.BytesIO()
    Image.fromarray(stored).save(buf, "JPEG", quality=95, exif=exif.tobytes())
    out = decode_image(buf.getvalue(), 16)[0].astype(int)  # upright: 20 wide, 40 tall, red on top -> centre crop
    assert (np.abs(out[2, 4:12] - (255, 0, 0)).max(-1) < 60).all()  # the crop's top rows are red
    assert (np.abs(out[13, 4:12] - (0, 0, 255)).max(-1) < 60).all()  # its bottom rows blue


def test_skipped_samples_are_listed_by_file_name_in_manifest_and_summary(tmp_path, bad_inputs, capsys):
    ann, folder, files = bad_inputs
    manifest = build_cache(official_records(ann, folder, limit=len(files)), tmp_path / "c", size=16, workers=1)
    listed = {e["image_id"]: e["file"] for e in manifest["skipped_examples"]}
    assert listed == {i: str(folder / f[0]) for i, f in files.items() if f[3] is not None}
    summary = capsys.readouterr().out
    assert f"{folder / 'truncated.jpg'} (id 11): unreadable (truncated or corrupt)" in summary
    assert f"{folder / 'missing.jpg'} (id 14): missing file" in summary


def test_prepare_refuses_an_out_folder_holding_another_cache(tmp_path, jpeg_factory, capsys):
    records = _records(jpeg_factory, 5)
    first = build_cache(records, tmp_path / "c", size=16, workers=1, source="a")
    assert build_cache(records, tmp_path / "c", size=16, workers=1, source="a") == first  # the same build: found
    for other in (dict(source="b"), dict(source="a", limit=3)):
        with pytest.raises(FileExistsError, match=rf"{tmp_path / 'c'} already holds a cache of another build"):
            build_cache(records, tmp_path / "c", size=16, workers=1, **{"source": "a", **other})
    with pytest.raises(FileExistsError, match="already holds a cache of another build"):
        save_paired(shapes.generate(4, seed=1), tmp_path / "c")
    save_paired(shapes.generate(4, seed=1), tmp_path / "s")
    assert save_paired(shapes.generate(4, seed=1), tmp_path / "s")["meta"]["seed"] == 1  # rerun: found, not redone
    with pytest.raises(FileExistsError, match=r"another build \(meta.seed: 1, not 2"):
        save_paired(shapes.generate(4, seed=2), tmp_path / "s")
    capsys.readouterr()
    assert main(["prepare", "shapes", "--n", "4", "--seed", "3", "--out", str(tmp_path / "s")]) == 2
    assert "already holds a cache of another build" in capsys.readouterr().err
    assert load_cache(tmp_path / "s").meta["seed"] == 1  # untouched


def test_single_folder_cache_keeps_images_memory_mapped(tmp_path):
    from miniclip.data.sources import load_pairs

    save_paired(shapes.generate(50, seed=1), tmp_path / "s")
    cache = load_cache(tmp_path / "s")
    train, val = load_pairs(str(tmp_path / "s"), "train"), load_pairs(str(tmp_path / "s"), "val")
    for part, ids in ((train, range(45)), (val, range(45, 50))):
        assert isinstance(part.images, np.memmap) and part.images.filename == cache.images.filename  # not a copy
        assert np.array_equal(part.images, cache.images[list(ids)])
        assert part.captions == [c for i in ids for c in cache.captions_of(i)]
    shuffled = cache.subset([3, 1, 2])  # not a range: gathered into memory, in that order
    assert not isinstance(shuffled.images, np.memmap) and np.array_equal(shuffled.images, cache.images[[3, 1, 2]])


def test_prepare_shapes_streams_in_chunks_and_really_resumes(tmp_path, monkeypatch, capsys):
    from miniclip.data.cache import build_shapes_cache

    options = dict(image_size=32, word_fraction=0.5)
    world = shapes.generate(23, seed=4, **options)  # the old way: the whole world in memory, then written
    save_paired(world, tmp_path / "whole", source={"name": "shapes", **world.meta})
    generate, asked, kill = shapes.generate, [], {"second chunk": True}

    def killed_after_one_chunk(n, seed=0, **kw):
        if not isinstance(seed, int):  # a chunk: seed is the stream's Generator
            asked.append(n)
            if len(asked) == 2 and kill.pop("second chunk", False):
                raise RuntimeError("killed")  # the process dies while the second chunk is being drawn
        return generate(n, seed, **kw)

    monkeypatch.setattr(shapes, "generate", killed_after_one_chunk)
    with pytest.raises(RuntimeError, match="killed"):
        build_shapes_cache(tmp_path / "s", 23, seed=4, chunk_size=5, **options)
    assert json.loads((tmp_path / "s" / "progress.json").read_text())["num_images"] == 5  # one chunk committed
    with pytest.raises(IncompleteCacheError):
        load_cache(tmp_path / "s")

    asked.clear()
    manifest = build_shapes_cache(tmp_path / "s", 23, seed=4, chunk_size=5, **options)  # the same call again
    assert asked == [5, 5, 5, 3]  # only the 18 images not yet written, and never more than a chunk in memory
    assert "resuming" in capsys.readouterr().out
    assert _files(tmp_path / "s") == _files(tmp_path / "whole")  # byte-identical to the uninterrupted build
    assert manifest["shape"] == [23, 32, 32, 3] and "rng_state" not in manifest
    assert not (tmp_path / "s" / "progress.json").exists()
    asked.clear()
    assert build_shapes_cache(tmp_path / "s", 23, seed=4, chunk_size=5, **options) == manifest and asked == []
    with pytest.raises(FileExistsError, match="already holds a cache of another build"):
        build_shapes_cache(tmp_path / "s", 23, seed=5, chunk_size=5, **options)


def test_cli_prepare_shapes_writes_what_save_paired_writes(tmp_path):
    assert main(["prepare", "shapes", "--n", "12", "--seed", "2", "--rendition", "sketch",
                 "--out", str(tmp_path / "cli")]) == 0  # fmt: skip
    world = shapes.generate(12, seed=2, rendition="sketch")
    save_paired(world, tmp_path / "whole", source={"name": "shapes", **world.meta})
    assert _files(tmp_path / "cli") == _files(tmp_path / "whole")


def test_cache_attributes_are_read_from_disk_when_asked_for(tmp_path):
    from miniclip.data.cache import CacheAttributes
    from miniclip.data.sources import load_pairs

    world = shapes.generate(50, seed=1)
    save_paired(world, tmp_path / "s")
    cache = load_cache(tmp_path / "s")
    assert isinstance(cache.attributes, CacheAttributes) and len(cache.attributes) == 50
    assert cache.attributes[3] == world.attributes[3] and cache.attributes[-1] == world.attributes[-1]
    assert cache.attributes == world.attributes and list(cache.attributes[10:13]) == world.attributes[10:13]
    with pytest.raises(IndexError):
        cache.attributes[50]
    train, val = load_pairs(str(tmp_path / "s"), "train"), load_pairs(str(tmp_path / "s"), "val")
    assert isinstance(train.attributes, CacheAttributes)  # a range of images: a slice, nothing parsed
    assert train.attributes == world.attributes[:45] and val.attributes == world.attributes[45:]
    assert cache.subset([3, 1]).attributes == [world.attributes[3], world.attributes[1]]


def test_training_batches_gather_from_the_memmap_not_a_copy(tmp_path):
    from miniclip.data.sources import load_pairs

    save_paired(shapes.generate(40, seed=1), tmp_path / "s")
    train = load_pairs(str(tmp_path / "s"), "train")
    batches = Batches(train, _tokens(train), batch_size=8)
    assert isinstance(batches.images, np.memmap) and str(batches.images.filename) == str(tmp_path / "s" / "images.u8")
    images, _, image_idx = batches.get(0)
    assert torch.allclose(images, torch.from_numpy((train.images[image_idx.numpy()].transpose(0, 3, 1, 2) / 255.0
                                                    - MEAN) / STD).float(), atol=1e-5)  # fmt: skip


def test_prepare_shapes_refuses_to_resume_without_the_random_state(tmp_path, monkeypatch):
    from miniclip.data.cache import build_shapes_cache

    generate = shapes.generate

    def killed_at_the_last_chunk(n, seed=0, **kw):
        if not isinstance(seed, int) and n == 1:  # chunks of 2, 2, 1 images
            raise RuntimeError("killed")
        return generate(n, seed, **kw)

    monkeypatch.setattr(shapes, "generate", killed_at_the_last_chunk)
    with pytest.raises(RuntimeError, match="killed"):
        build_shapes_cache(tmp_path / "s", 5, chunk_size=2)
    progress = json.loads((tmp_path / "s" / "progress.json").read_text())
    assert progress["num_images"] == 4
    del progress["rng_state"]  # as an older miniclip's interrupted `prepare shapes` left it
    (tmp_path / "s" / "progress.json").write_text(json.dumps(progress))
    monkeypatch.setattr(shapes, "generate", generate)
    with pytest.raises(IncompleteCacheError, match="cannot be resumed.*delete the folder"):
        build_shapes_cache(tmp_path / "s", 5, chunk_size=2)


def test_a_build_where_no_image_is_usable_fails_instead_of_writing_an_empty_cache(tmp_path, capsys):
    """The classic mistake: val2017's annotations with train2017's images. Every file is missing, and the cache used
    to be finished with 0 images, exit status 0; training on it then failed far from the cause."""
    records = [Record(str(tmp_path / f"{i}.jpg"), ["a cat"], "val", i) for i in range(3)]
    with pytest.raises(ValueError, match=r"none of the 3 records gave a usable image \(3 missing file\)"):
        build_cache(records, tmp_path / "cache", size=16, workers=1)
    assert not (tmp_path / "cache" / "manifest.json").exists()  # not finished: load_cache says it is incomplete
    with pytest.raises(IncompleteCacheError):
        load_cache(tmp_path / "cache")
