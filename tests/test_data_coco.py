"""The three COCO sources on tiny fixtures in their exact formats (no network: HF_HUB_OFFLINE=1)."""
import json
import warnings

import numpy as np
import pytest

from miniclip.data import coco
from miniclip.data.decode import decode_image


def _no_warnings():
    return warnings.catch_warnings(record=True)


def test_official_folder(coco_official):
    with pytest.warns(UserWarning, match=r"5 images for split 'train'.*118,287"):
        records = list(coco.official_records(coco_official["annotations"], coco_official["folder"]))
    assert [r.image_id for r in records] == coco_official["ids"]
    for r in records:
        assert r.split == "train"
        assert r.captions == coco_official["captions"][r.image_id]
        assert decode_image(r.image, 16)[0].shape == (16, 16, 3)


def test_official_zip_reads_members_directly(coco_official):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        folder = list(coco.official_records(coco_official["annotations"], coco_official["folder"]))
        zipped = list(coco.official_records(coco_official["annotations"], coco_official["zip"]))
    assert all(isinstance(r.image, coco.ZipMember) for r in zipped)
    assert zipped[0].image.name == f"train2017/{coco_official['ids'][0]:012d}.jpg"
    for a, b in zip(folder, zipped):
        assert (a.image_id, a.captions, a.split) == (b.image_id, b.captions, b.split)
        assert np.array_equal(decode_image(a.image, 24)[0], decode_image(b.image, 24)[0])


def test_official_limit_gives_no_size_warning(coco_official):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        records = list(coco.official_records(coco_official["annotations"], coco_official["folder"], limit=2))
    assert len(records) == 2


def test_official_wrong_keys(tmp_path, coco_karpathy):
    with pytest.raises(ValueError, match=r"official COCO captions file.*expected.*'annotations'.*found.*dataset.*--source karpathy"):
        coco.official_records(coco_karpathy["json"], tmp_path)
    bad = tmp_path / "captions_val2017.json"
    bad.write_text(json.dumps({"images": [{"id": 1, "file": "x.jpg"}], "annotations": []}))
    with pytest.raises(ValueError, match=r"images\[0\].*'file_name'.*found.*'file'"):
        coco.official_records(bad, tmp_path)


def test_karpathy_splits(coco_karpathy):
    def ids(split, **kw):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return [r.image_id for r in coco.karpathy_records(coco_karpathy["json"], coco_karpathy["root"], split, **kw)]

    assert ids("train") == [101, 102, 106]  # restval merged into train
    assert ids("val") == [103]
    assert ids("test") == [104, 105]
    assert ids(None) == [101, 102, 103, 104, 105, 106]
    assert ids("train", limit=2) == [101, 102]
    with pytest.warns(UserWarning, match=r"2 images for split 'test'.*Karpathy split has 5,000"):
        records = list(coco.karpathy_records(coco_karpathy["json"], coco_karpathy["root"], "test"))
    assert records[0].captions == [f"photo 104 number {j}." for j in range(5)]
    assert records[0].image.endswith("val2014/COCO_val2014_000000000104.jpg")
    assert decode_image(records[0].image, 16)[0].shape == (16, 16, 3)


def test_karpathy_wrong_keys(coco_official, tmp_path):
    with pytest.raises(ValueError, match=r"Karpathy file.*images\[0\].*expected.*'filepath'.*found.*'file_name'.*--source coco"):
        # an official file has "images" but not the Karpathy keys in them
        coco.karpathy_records(coco_official["annotations"], tmp_path)


@pytest.mark.parametrize("layout", ["per_image", "per_caption"])
def test_hf_parquet_through_datasets_streaming(coco_parquet, layout):
    path = str(coco_parquet[layout])
    with pytest.warns(UserWarning, match=r"4 images for split 'val'.*5,000"):
        records = list(coco.hf_records("val", "parquet", data_files=path))
    assert [r.image_id for r in records] == coco_parquet["ids"]
    assert [r.captions for r in records] == coco_parquet["captions"]
    assert all(r.split == "val" for r in records)
    assert [r.image for r in records] == coco_parquet["jpegs"]  # raw bytes: decoded later, in parallel
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [r.image_id for r in coco.hf_records("val", "parquet", data_files=path, limit=3)] == coco_parquet["ids"][:3]


def test_hf_falls_back_to_the_only_split(coco_parquet):
    records = coco.hf_records("test", "parquet", data_files=str(coco_parquet["per_image"]), hf_split="test", limit=1)
    assert len(list(records)) == 1


def test_hf_refuses_to_read_a_folder_of_training_files_as_another_split(coco_parquet, tmp_path):
    """A one-split folder whose files say "train" used to become a "test" cache without a word: training images
    in the evaluation. A folder whose only split is the one asked for, or has a name of its own, is read."""
    import shutil
    for name in ("train", "test", "default"):
        (tmp_path / name / "data").mkdir(parents=True)
        shutil.copy(coco_parquet["per_image"], tmp_path / name / "data" / f"{name}-00000-of-00001.parquet")
    with pytest.raises(ValueError, match=r"splits \['train'\].*--split"):
        coco.hf_records("test", str(tmp_path / "train"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "only 4 images for split 'test'"
        assert len(list(coco.hf_records("test", str(tmp_path / "test")))) == 4
        assert len(list(coco.hf_records("test", str(tmp_path / "default")))) == 4
        assert len(list(coco.hf_records("train", str(tmp_path / "train")))) == 4


def test_hf_wrong_columns(tmp_path):
    import datasets

    path = tmp_path / "other.parquet"
    datasets.Dataset.from_dict({"id": [1], "text": ["x"]}).to_parquet(str(path))
    with pytest.raises(ValueError, match=r"hf source 'parquet'.*'sentences_raw'.*'caption'.*found \['id', 'text'\].*rename_column"):
        coco.hf_records("train", "parquet", data_files=str(path))


def test_open_source_descriptions(coco_official, coco_karpathy):
    records, desc = coco.open_source("coco", annotations=coco_official["annotations"], images=coco_official["zip"], limit=1)
    assert desc["split"] == "train" and desc["source"] == "coco" and len(list(records)) == 1
    records, desc = coco.open_source("karpathy", karpathy_json=coco_karpathy["json"], images=coco_karpathy["root"],
                                     split="val", limit=1)  # fmt: skip
    assert desc["split"] == "val" and [r.image_id for r in records] == [103]
    with pytest.raises(ValueError, match="needs annotations"):
        coco.open_source("coco")


# ------------------------------------------------------------------------------------------ every entry checked


def _official(tmp_path, images, annotations):
    path = tmp_path / "captions_val2017.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations}))
    return path


def _read_official(path, folder):
    with pytest.warns(UserWarning, match="bad entries skipped") as caught:
        records = list(coco.official_records(path, folder, limit=100))
    return records, "\n".join(str(w.message) for w in caught)


def test_coco_every_entry_is_validated_and_reported_with_index_and_file_name(tmp_path):
    images = [{"id": 1, "file_name": "a.jpg"}, {"id": 2}, {"id": 3, "file_name": "c.jpg"}, {"file_name": "d.jpg"}]
    annotations = [{"image_id": 1, "caption": "one"}, {"image_id": 3, "text": "three"}, {"image_id": 3, "caption": "c"}]
    records, report = _read_official(_official(tmp_path, images, annotations), tmp_path)
    assert [(r.image_id, r.captions) for r in records] == [(1, ["one"]), (3, ["c"])]  # bad entries skipped, not fatal
    assert "images[1]: expected keys ['id', 'file_name'], found ['id']" in report
    assert "images[3] (d.jpg): expected keys" in report
    assert "annotations[1]: expected keys ['image_id', 'caption']" in report


def test_coco_duplicate_image_ids_are_reported(tmp_path):
    images = [{"id": 5, "file_name": "a.jpg"}, {"id": 5, "file_name": "b.jpg"}]
    records, report = _read_official(_official(tmp_path, images, [{"image_id": 5, "caption": "x"}]), tmp_path)
    assert [r.image.rsplit("/", 1)[-1] for r in records] == ["a.jpg"] and records[0].captions == ["x"]
    assert "images[1] (b.jpg): duplicate id 5 (first at images[0])" in report


def test_coco_orphan_captions_are_reported(tmp_path):
    annotations = [{"image_id": 5, "caption": "x"}, {"image_id": 77, "caption": "of no image"}]
    records, report = _read_official(_official(tmp_path, [{"id": 5, "file_name": "a.jpg"}], annotations), tmp_path)
    assert records[0].captions == ["x"]
    assert "annotations[1]: a caption of image id 77, which is not in images (an orphan)" in report


def test_coco_image_id_that_is_not_an_integer_is_refused_not_truncated(tmp_path):
    images = [{"id": 1, "file_name": "a.jpg"}, {"id": 1.7, "file_name": "b.jpg"}, {"id": 2.0, "file_name": "c.jpg"}]
    annotations = [{"image_id": 1, "caption": "x"}, {"image_id": 1.7, "caption": "y"}]
    records, report = _read_official(_official(tmp_path, images, annotations), tmp_path)
    assert [r.image_id for r in records] == [1, 2] and records[0].captions == ["x"]  # never 1.7 -> 1
    assert "images[1] (b.jpg): id 1.7 is not an integer" in report
    assert "annotations[1]: image_id 1.7 is not an integer" in report


def test_coco_file_name_that_leaves_the_image_folder_is_refused(tmp_path, coco_karpathy):
    images = [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "../../etc/passwd"},
              {"id": 3, "file_name": "/etc/passwd"}]  # fmt: skip
    records, report = _read_official(_official(tmp_path, images, []), tmp_path)
    assert [r.image_id for r in records] == [1]
    assert "images[1] (../../etc/passwd): file name '../../etc/passwd' leaves the image folder" in report
    assert "images[2] (/etc/passwd): file name '/etc/passwd' leaves the image folder" in report
    data = json.loads(coco_karpathy["json"].read_text())
    data["images"][0]["filepath"] = "../.."
    data["images"][1]["cocoid"] = data["images"][2]["cocoid"]
    path = tmp_path / "evil_karpathy.json"
    path.write_text(json.dumps(data))
    with pytest.warns(UserWarning, match=r"(?s)images\[0\] \(COCO_train2014_000000000101.jpg\): file name '../../COCO.*"
                                         r"images\[2\].*duplicate cocoid 103 \(first at images\[1\]\)"):
        records = list(coco.karpathy_records(path, coco_karpathy["root"], None))
    assert [r.image_id for r in records] == [103, 104, 105, 106]


def test_coco_file_of_only_bad_entries_is_refused_as_the_wrong_file(tmp_path):
    with pytest.raises(ValueError, match=r"no usable entry in annotations; annotations\[0\].*'caption'.*found.*'text'"):
        coco.official_records(_official(tmp_path, [{"id": 1, "file_name": "a.jpg"}], [{"image_id": 1, "text": "x"}]),
                              tmp_path)  # fmt: skip
