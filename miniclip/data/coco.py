"""COCO captions: three sources of the same records, `Record(image, captions, split, image_id)`.

    hf_records        the Hugging Face Hub, streamed (no full download before the first image)
    official_records  captions_{train,val}2017.json with the image folder or its zip
    karpathy_records  dataset_coco.json (the Karpathy split) with the official image folders

`image` is whatever is cheapest to hand to a decoder process: raw JPEG bytes, a file path, or a
`ZipMember` (a zip file and a member name). Nothing here decodes pixels: cache.py does, in parallel.
Splits are "train" / "val" / "test" (Karpathy's "restval" is merged into "train"). Every entry of a JSON file
is checked: a bad one (a missing key, an id that is not an integer, a file name that leaves the image folder,
a duplicated id, a caption of no known image) is skipped and named in one warning; a file whose entries are
all bad is refused as the wrong file.
"""
from __future__ import annotations

import json
import os
import warnings
import zipfile
from collections import defaultdict
from itertools import groupby, islice
from pathlib import Path, PurePosixPath
from typing import Iterator, NamedTuple

SPLITS = ("train", "val", "test")
KARPATHY_SIZES = {"train": 113_287, "val": 5_000, "test": 5_000}  # images per Karpathy split
OFFICIAL_SIZES = {"train": 118_287, "val": 5_000}  # images in train2017 / val2017

HF_DEFAULT = "Multimodal-Fatima/COCO_captions_{}"  # {} = train / validation / test (one repository each)
HF_SPLIT_NAMES = {"train": "train", "val": "validation", "test": "test"}
# The two Hub layouts we know: one row per image, or one row per caption (grouped here by cocoid).
HF_LAYOUTS = {
    "per_image": ("cocoid", "sentences_raw", "image"),  # Multimodal-Fatima/COCO_captions_*
    "per_caption": ("cocoid", "caption", "image"),  # jxie/coco_captions
}


class Record(NamedTuple):
    """One image with its captions. image: bytes, a path (str), a ZipMember or a PIL image."""

    image: object
    captions: list
    split: str
    image_id: int


class ZipMember(NamedTuple):
    """An image inside a zip file, read by the decoder process itself."""

    zip_path: str
    name: str


def _check_split(split):
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS} (or None for all), got {split!r}")


def _sized(records, limit: int | None, source: str, split: str | None, known: dict, what: str) -> Iterator[Record]:
    """The first `limit` records; after a whole split (no limit), a warning when its size differs from the known one."""
    count = 0
    for count, record in enumerate(islice(records, limit), 1):
        yield record
    if limit is None and split in known and count != known[split]:
        warnings.warn(f"{source}: read {count:,} images for split {split!r}, but the {what} has {known[split]:,}. "
                      "The source may be incomplete or a different version; results will not be comparable "
                      "with published numbers.", stacklevel=1)


def _missing_columns_error(source: str, expected, found, todo: str) -> ValueError:
    expected = expected if isinstance(expected, str) else list(expected)
    return ValueError(f"{source}: expected columns/keys {expected}, found {sorted(found)}. {todo}")


# ------------------------------------------------------------------------------------------
# (a) The Hugging Face Hub, streamed


def _image_payload(value):
    """The cheapest form of an undecoded `datasets.Image` value: its bytes, else its path."""
    if isinstance(value, dict):
        if value.get("bytes") is not None:
            return value["bytes"]
        if value.get("path"):
            return value["path"]
        raise ValueError("an image cell has neither bytes nor a path")
    return value  # already a PIL image (a dataset without an Image feature)


def _open_stream(dataset: str, data_files, hf_split: str, split: str, named: bool):
    """load_dataset(..., streaming=True), falling back to the only split when the expected one is absent: one
    repository per split names it as it likes. Unless the files name their splits (`named`) and that only split is
    another of COCO's than `split`: its training images read as the test split would leak into the evaluation."""
    import datasets  # here, not at the top: slow to import (~1 s) and only the Hub source needs it

    try:
        return datasets.load_dataset(dataset, data_files=data_files, split=hf_split, streaming=True)
    except ValueError as err:
        if "split" not in str(err).lower():
            raise
        names = datasets.get_dataset_split_names(dataset, data_files=data_files)
        if len(names) != 1 or (named and names[0] != HF_SPLIT_NAMES[split] and names[0] in HF_SPLIT_NAMES.values()):
            raise ValueError(f"hf source {dataset!r} has the splits {names}, not {hf_split!r}: read it with the "
                             f"--split it holds, or point --hf-dataset (or --hf-data-files) at the {split} split's "
                             "files") from err
        return datasets.load_dataset(dataset, data_files=data_files, split=names[0], streaming=True)


def hf_records(split: str = "train", dataset: str | None = None, *, data_files=None, hf_split: str | None = None,
               limit: int | None = None) -> Iterator[Record]:
    """Stream COCO from the Hub: yields Record(image bytes, captions, split, cocoid).

    dataset: a Hub id (default Multimodal-Fatima/COCO_captions_{train,validation,test}, one repository
    per split) or a builder name such as "parquet" together with data_files (what the tests use).
    hf_split: the split name inside the dataset (default: "train" with data_files, else
    train/validation/test). The layout (one row per image, or one per caption as in jxie/coco_captions)
    is read from the columns. limit: stop after that many images.
    """
    _check_split(split)
    if split is None:
        raise ValueError("hf_records reads one split at a time: pass split='train', 'val' or 'test'")
    path = dataset or HF_DEFAULT.format(HF_SPLIT_NAMES[split])
    if hf_split is None:
        hf_split = "train" if data_files is not None or dataset is None else HF_SPLIT_NAMES[split]
    named = dataset is not None and data_files is None  # a repository or folder whose file names name its splits
    try:
        stream = _open_stream(path, data_files, hf_split, split, named)
    except ConnectionError as e:  # offline (HF_HUB_OFFLINE), or the Hub cannot be reached
        raise ConnectionError(f"{e}; --source hf streams COCO from the Hugging Face Hub: connect this machine, or "
                              "read local copies (--hf-dataset parquet --hf-data-files FILES, or --source coco / "
                              "karpathy with the official files)") from e
    columns = stream.column_names
    if columns is None:  # features unknown until the first row
        columns = list(next(iter(stream)).keys())
    layout = next((name for name, cols in HF_LAYOUTS.items() if set(cols) <= set(columns)), None)
    if layout is None:
        raise _missing_columns_error(
            f"hf source {path!r}", f"{list(HF_LAYOUTS['per_image'])} or {list(HF_LAYOUTS['per_caption'])}", columns,
            "Use a dataset with one row per image (like Multimodal-Fatima/COCO_captions_train) or one row "
            "per caption (like jxie/coco_captions), rename its columns with IterableDataset.rename_column, "
            "or use --source coco / --source karpathy with the official files.",
        )
    import datasets  # (see _open_stream: slow to import, Hub source only)

    stream = stream.select_columns(list(HF_LAYOUTS[layout]))
    stream = stream.cast_column("image", datasets.Image(decode=False))  # JPEG bytes; the cache decodes them
    return _hf_rows_to_records(stream, layout, split, limit, f"hf source {path!r}")


def _cocoid(row: dict) -> int:
    return int(row["cocoid"])


def _caption_rows_to_records(stream, split: str) -> Iterator[Record]:
    """One row per caption: consecutive rows of one cocoid make one record, with the first row's image."""
    for cocoid, rows in groupby(stream, key=_cocoid):
        rows = list(rows)
        yield Record(_image_payload(rows[0]["image"]), [row["caption"] for row in rows], split, cocoid)


def _hf_rows_to_records(stream, layout: str, split: str, limit: int | None, source: str) -> Iterator[Record]:
    if layout == "per_image":
        records = (Record(_image_payload(row["image"]), list(row["sentences_raw"]), split, _cocoid(row))
                   for row in stream)
    else:
        records = _caption_rows_to_records(stream, split)
    return _sized(records, limit, source, split, KARPATHY_SIZES, "Karpathy split")


# ------------------------------------------------------------------------------------------
# JSON files (official and Karpathy)


def _load_json(path) -> dict:
    """json.load that survives invalid UTF-8 (the bytes are kept as surrogates for the cache to repair)."""
    try:
        return json.loads(Path(path).read_bytes().decode("utf-8", errors="surrogateescape"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}): is it the whole file, downloaded completely?") from None


def _require(source: str, obj, keys, todo: str) -> None:
    if not isinstance(obj, dict) or not set(keys) <= set(obj):
        found = list(obj) if isinstance(obj, dict) else [type(obj).__name__]
        raise _missing_columns_error(source, keys, found, todo)


MAX_REPORTED = 20  # problems of a JSON file listed one by one (all are counted)


def _problem(entry, keys, id_key: str, path_keys=()) -> str | None:
    """Why one entry of a JSON list cannot be used (None if it can)."""
    if not isinstance(entry, dict) or not set(keys) <= set(entry):
        found = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
        return f"expected keys {list(keys)}, found {found}"
    value = entry[id_key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
        return f"{id_key} {value!r} is not an integer"  # refused: 1.7 truncated to 1 would be another image
    name = PurePosixPath("/".join(str(entry[k]).replace("\\", "/") for k in path_keys))
    if path_keys and (name.is_absolute() or ".." in name.parts):
        return f"file name {str(name)!r} leaves the image folder"
    return None


def _usable_images(images, problems, keys, id_key: str, path_keys, name_key: str) -> dict[int, tuple[int, dict]]:
    """The usable entries of an "images" list: {id: (index, entry)} in file order. An unusable entry, or a second
    entry with an id already seen, is added to problems (by index and file name) and left out."""
    usable: dict[int, tuple[int, dict]] = {}
    for i, im in enumerate(images):
        why = _problem(im, keys, id_key, path_keys)
        if why is None and int(im[id_key]) in usable:
            why = f"duplicate {id_key} {int(im[id_key])} (first at images[{usable[int(im[id_key])][0]}])"
        if why is not None:
            problems.add("images", i, im, why, name_key)
            continue
        usable[int(im[id_key])] = (i, im)
    return usable


class _Problems(list):
    """What was wrong with a JSON file's entries: "images[3] (x.jpg): why", one warning at the end."""

    def add(self, where: str, i: int, entry, why: str, name_key: str | None = None) -> None:
        name = entry.get(name_key) if isinstance(entry, dict) and name_key else None
        self.append(f"{where}[{i}]{f' ({name})' if name else ''}: {why}")

    def report(self, source: str, todo: str, **lists: tuple[list, list]) -> None:
        """One warning listing the problems; a ValueError if a list (name=(entries, usable ones)) has none usable."""
        for name, (entries, usable) in lists.items():
            if entries and not usable:  # not one good entry: most likely the wrong file
                first = next(p for p in self if p.startswith(name + "["))
                raise ValueError(f"{source}: no usable entry in {name}; {first}. {todo}")
        if self:
            more = [f"... and {len(self) - MAX_REPORTED} more"] if len(self) > MAX_REPORTED else []
            listed = "\n  ".join(self[:MAX_REPORTED] + more)
            warnings.warn(f"{source}: {len(self)} bad entries skipped:\n  {listed}", stacklevel=3)


# ------------------------------------------------------------------------------------------
# (b) The official files


def _split_from_name(*names) -> str | None:
    """The split the first telling file name says ("train2017" -> "train"), or None."""
    for name in names:
        base = Path(str(name)).name.lower()
        for split in SPLITS:
            if split in base:
                return split
    return None


def official_records(annotations, images, split: str | None = None, limit: int | None = None) -> Iterator[Record]:
    """Official COCO captions: annotations = captions_{train,val}2017.json, images = its folder or zip.

    Yields Record(path or ZipMember, captions, split, image id) in the order of the JSON's "images".
    split defaults to what the file names say (train2017 -> "train", val2017 -> "val").
    """
    _check_split(split)
    source = f"official COCO captions file {str(annotations)!r}"
    todo = ("Pass captions_train2017.json or captions_val2017.json from annotations_trainval2017.zip "
            "(for dataset_coco.json use --source karpathy).")
    data = _load_json(annotations)
    _require(source, data, ("images", "annotations"), todo)
    split = split or _split_from_name(annotations, images)
    if split is None:
        raise ValueError(f"{source}: cannot tell the split from the file names; pass split='train' or 'val' (--split)")
    problems = _Problems()
    images_by_id = _usable_images(data["images"], problems, ("id", "file_name"), "id", ("file_name",), "file_name")
    image_list = [im for _, im in images_by_id.values()]
    captions, usable = defaultdict(list), []
    for i, ann in enumerate(data["annotations"]):
        why = _problem(ann, ("image_id", "caption"), "image_id")
        if why is None and int(ann["image_id"]) not in images_by_id:
            why = f"a caption of image id {ann['image_id']}, which is not in images (an orphan)"
        if why is not None:
            problems.add("annotations", i, ann, why)
            continue
        captions[int(ann["image_id"])].append(ann["caption"])
        usable.append(i)
    problems.report(source, todo, images=(data["images"], image_list), annotations=(data["annotations"], usable))
    records = _official_iter(image_list, captions, Path(images), split)
    return _sized(records, limit, source, split, OFFICIAL_SIZES, "official 2017 split")


def _official_iter(image_list, captions, images: Path, split) -> Iterator[Record]:
    in_zip = images.suffix.lower() == ".zip"
    if in_zip:
        try:
            with zipfile.ZipFile(images) as zf:  # members are "train2017/000000000009.jpg": index by base name
                members = {Path(n).name: n for n in zf.namelist() if not n.endswith("/")}
        except zipfile.BadZipFile as e:
            raise ValueError(f"{images} is not a readable zip file ({e}): is the download complete? "
                             "(--images takes train2017.zip or the folder it unzips to)") from None
    for im in image_list:
        name = im["file_name"]
        image = ZipMember(str(images), members.get(name, name)) if in_zip else str(images / name)
        yield Record(image, captions.get(int(im["id"]), []), split, int(im["id"]))


# ------------------------------------------------------------------------------------------
# (c) The Karpathy split


def karpathy_records(karpathy_json, images_root, split: str | None = "train", limit: int | None = None
                     ) -> Iterator[Record]:
    """Karpathy's dataset_coco.json with the official image folders: image = root/filepath/filename.

    split: "train" (with restval), "val", "test", or None for all. Yields Record(path, raw captions, split, cocoid).
    """
    _check_split(split)
    source = f"Karpathy file {str(karpathy_json)!r}"
    todo = "Pass dataset_coco.json from Karpathy's caption_datasets.zip (for captions_*.json use --source coco)."
    data = _load_json(karpathy_json)
    _require(source, data, ("images",), todo)
    problems, image_list = _Problems(), []
    keys = ("filepath", "filename", "split", "cocoid", "sentences")
    images_by_id = _usable_images(data["images"], problems, keys, "cocoid", ("filepath", "filename"), "filename")
    for i, im in images_by_id.values():
        good = [s for s in im["sentences"] if isinstance(s, dict) and "raw" in s]
        if len(good) < len(im["sentences"]):
            dropped = len(im["sentences"]) - len(good)
            problems.add("images", i, im, f"{dropped} sentences without 'raw' dropped", "filename")
        image_list.append({**im, "sentences": good})
    problems.report(source, todo, images=(data["images"], image_list))
    records = _karpathy_iter(image_list, Path(images_root), split)
    return _sized(records, limit, source, split, KARPATHY_SIZES, "Karpathy split")


def _karpathy_iter(image_list, root: Path, split) -> Iterator[Record]:
    for im in image_list:
        im_split = "train" if im["split"] == "restval" else im["split"]
        if split is not None and im_split != split:
            continue
        path = root / im["filepath"] / im["filename"]
        if not path.exists() and (root / im["filename"]).exists():
            path = root / im["filename"]  # images copied into one folder
        yield Record(str(path), [s["raw"] for s in im["sentences"]], im_split, int(im["cocoid"]))


# ------------------------------------------------------------------------------------------


def open_source(source: str, *, split: str | None = None, hf_dataset: str | None = None, hf_data_files=None,
                annotations=None, images=None, karpathy_json=None, limit: int | None = None
                ) -> tuple[Iterator[Record], dict]:
    """Records from source "hf" | "coco" | "karpathy", plus a description (stored in the cache manifest)."""
    for flag, path in (("--annotations", annotations), ("--images", images), ("--karpathy-json", karpathy_json)):
        if path is not None and not Path(path).exists():
            raise FileNotFoundError(f"{flag} {path}: no such file or folder")
    if source == "hf":
        split = split or "train"
        records = hf_records(split, hf_dataset, data_files=hf_data_files, limit=limit)
        desc = {"dataset": hf_dataset or HF_DEFAULT.format(HF_SPLIT_NAMES[split]), "data_files": hf_data_files}
    elif source == "coco":
        if annotations is None or images is None:
            raise ValueError("source 'coco' needs annotations (captions_*2017.json) and images (folder or zip)")
        records = official_records(annotations, images, split, limit)
        split = split or _split_from_name(annotations, images)
        desc = {"annotations": os.fspath(annotations), "images": os.fspath(images)}
    elif source == "karpathy":
        if karpathy_json is None or images is None:
            raise ValueError("source 'karpathy' needs karpathy_json (dataset_coco.json) and images (the root folder)")
        split = split or "train"
        records = karpathy_records(karpathy_json, images, split, limit)
        desc = {"karpathy_json": os.fspath(karpathy_json), "images": os.fspath(images)}
    else:
        raise ValueError(f"source must be 'hf', 'coco' or 'karpathy', got {source!r}")
    return records, {"name": "coco", "source": source, **desc, "split": split}
