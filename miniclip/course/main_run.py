"""The data of a lesson and the one main training run that lessons 4-10 share.

    lesson = start_lesson(seed=0)
    data = sample_pairs(lesson, 2_000)   # pairs to look at: COCO captions (GPU) or the shapes world
    result = main_run(lesson)            # lesson 4 trains it; later lessons load it in seconds

Where the remote data comes from is decided here and nowhere else: `coco_source(lesson, split)` (the Hub, or
the stand-ins' copy of its files), `cifar10(lesson)` (torchvision's download, or the stand-in) and
`clip_checkpoint(lesson)` (OpenAI's CLIP on the Hub, or a tiny stand-in in the same format). A lesson with
`lesson.standins` (the rehearsal; the GPU lesson with MINICLIP_STANDINS) reads the stand-ins, built on first use.

The main run is defined here and nowhere else: `main_run_config(lesson)` is its recipe and `main_run_dir(lesson)`
its folder, so that every notebook that calls `main_run` (or `load_or_train` with that config and folder) gets
the same model. On the GPU lesson the data is a cache of the first `lesson.num_images` COCO training images
(Karpathy split, streamed from the Hugging Face Hub, 64 px) that `prepare_coco` builds once; its last 1,000
images are held out for the validation metrics of training.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from miniclip.config import CLIPConfig, TrainConfig
from miniclip.course.lesson import REHEARSAL_STANDIN_IMAGES, Lesson
from miniclip.course.standins import build_standins, load_cifar10_standin
from miniclip.data import PairedData
from miniclip.data.cache import build_cache, load_cache
from miniclip.data.coco import HF_SPLIT_NAMES, open_source
from miniclip.data.sources import load_pairs
from miniclip.locks import follow_writer
from miniclip.run_folder import run_is_finished
from miniclip.train import TrainResult, load_or_train
from miniclip.zeroshot import CIFAR10_CLASSES, load_cifar10

CLIP_CHECKPOINT = "openai/clip-vit-base-patch32"  # OpenAI's ViT-B/32 CLIP on the Hugging Face Hub (600 MB)


# ---- where remote data comes from: the network, or the lesson's stand-ins ----------------------------------------


def standins_dir(lesson: Lesson) -> Path:
    """The lesson's stand-ins folder, built on first use (REHEARSAL_STANDIN_IMAGES images for the rehearsal, the
    build_standins default for the GPU lesson); a folder that already holds stand-ins is used as it is."""
    if lesson.standins is None:
        raise ValueError(f"the {lesson.name} lesson reads the real data, not stand-ins (set MINICLIP_STANDINS=DIR)")
    if not (lesson.standins / "manifest.json").is_file():
        images = {"images": REHEARSAL_STANDIN_IMAGES} if lesson.smoke else {}
        print(f"building the stand-ins of COCO, CIFAR-10 and OpenAI's CLIP in {lesson.standins}")
        build_standins(lesson.standins, **images)
    return lesson.standins


def coco_source(lesson: Lesson, split: str = "train") -> dict:
    """The keywords of miniclip.data.coco.open_source for a COCO split ("train", "val", "test") of the lesson:
    the Hub repository (streamed) or the stand-ins' local copy of it, read by the same reader."""
    if lesson.standins is None:
        return {"source": "hf"}
    repository = standins_dir(lesson) / "hub" / f"COCO_captions_{HF_SPLIT_NAMES[split]}"  # as the Hub's, one per split
    return {"source": "hf", "hf_dataset": str(repository)}


def clip_checkpoint(lesson: Lesson) -> str:
    """What miniclip.hf.from_transformers loads as "OpenAI's CLIP": the Hub id, or the stand-in folder."""
    return CLIP_CHECKPOINT if lesson.standins is None else str(standins_dir(lesson) / "clip-vit-base-patch32")


def cifar10(lesson: Lesson) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """CIFAR-10's test set (images uint8 [N, 32, 32, 3], labels int64 [N], class names): downloaded once
    (163 MB) into lesson.runs_dir / "data", or the stand-in (10 shapes-world classes)."""
    if lesson.standins is None:
        images, labels = load_cifar10(lesson.runs_dir / "data", download=True)
        return images, labels, list(CIFAR10_CLASSES)
    return load_cifar10_standin(standins_dir(lesson))


# ---- the lesson's data and its main run --------------------------------------------------------------------------


def image_size(lesson: Lesson) -> int:
    """The image side (pixels) of the lesson's model preset: the size data is prepared at."""
    return CLIPConfig.preset(lesson.preset).image_size


def coco_cache_dir(lesson: Lesson, split: str = "train", limit: int | None = None) -> Path:
    """Where the COCO cache of a split (first `limit` images; None = lesson.num_images for train, all else) lives."""
    if limit is None and split == "train":
        limit = lesson.num_images or None
    return lesson.runs_dir / "data" / f"coco-{split}-{image_size(lesson)}px-{limit or 'all'}"


def prepare_coco(lesson: Lesson, split: str = "train", limit: int | None = None, workers: int | None = None,
                 **source) -> Path:
    """Build (or find, or finish an interrupted build of) the COCO cache of a split; returns its folder.

    The Python form of `miniclip prepare coco --source hf --split SPLIT --limit LIMIT --size S --out DIR`.
    limit: images to read (default: lesson.num_images for train, the whole split otherwise).
    source: keywords of miniclip.data.coco.open_source (default: coco_source(lesson, split)), e.g.
    hf_dataset="parquet", hf_data_files=[...] for local files.
    """
    if limit is None and split == "train":
        limit = lesson.num_images or None
    out = coco_cache_dir(lesson, split, limit)
    if (out / "manifest.json").is_file():
        return out
    source = {"source": "hf", **(source or coco_source(lesson, split))}
    records, desc = open_source(source.pop("source"), split=split, limit=limit, **source)
    build_cache(records, out, size=image_size(lesson), workers=workers, limit=limit, source=desc)
    return out


def coco_pairs(lesson: Lesson, split: str = "train", limit: int | None = None, **source) -> PairedData:
    """Every image of a COCO cache (prepared if needed) as PairedData, images a read-only uint8 memmap [N, S, S, 3]."""
    return load_cache(prepare_coco(lesson, split, limit, **source))


def sample_pairs(lesson: Lesson, n: int, split: str = "train", seed: int = 0) -> PairedData:
    """n (image, captions) pairs of the lesson's data, for looking at and for small experiments.

    shapes: n generated scenes of that split (the same ones for the same seed). COCO: the first n images of the
    main run's training cache when it is already there, otherwise a small cache of the first n images of the split.
    """
    if lesson.data == "shapes":
        return load_pairs("shapes", split, image_size=image_size(lesson), n=n, seed=seed)
    main = coco_cache_dir(lesson, "train")
    if split == "train" and (main / "manifest.json").is_file():
        data = load_cache(main)
        if data.num_images >= n:
            return data.subset(range(n))
    return coco_pairs(lesson, split, limit=n)


def main_run_config(lesson: Lesson) -> TrainConfig:
    """The recipe of the main run: the preset's own recipe with the lesson's data, steps, number of images (and
    batch size, if the lesson sets one)."""
    data = "shapes" if lesson.data == "shapes" else str(coco_cache_dir(lesson, "train"))  # TrainConfig keeps a string
    sizes = {"batch_size": lesson.batch_size} if lesson.batch_size else {}
    return TrainConfig.for_preset(lesson.preset, data=data, steps=lesson.steps, num_images=lesson.num_images, **sizes)


def main_run_dir(lesson: Lesson) -> Path:
    """The main run's folder: lesson.runs_dir / "main"."""
    return lesson.runs_dir / "main"


def main_run(lesson: Lesson, progress: bool = True) -> TrainResult:
    """The main run: prepare its data (COCO on the GPU lesson), then load it if it is finished, else train it.

    Returns miniclip.train.TrainResult(model on lesson.device in eval mode, tokenizer, history, out).
    """
    cfg, out = main_run_config(lesson), main_run_dir(lesson)
    follow_writer(out, cfg.steps, progress)  # lesson 4 still training it in another notebook: wait, then load
    if run_is_finished(cfg, out):
        print(f"main run: loading the finished run in {out}")
    else:
        if lesson.data == "coco":
            prepare_coco(lesson, "train")
        print(f"main run: training {cfg.preset} for {cfg.steps} steps into {out}")
    result = load_or_train(cfg, out=out, progress=progress)
    result.model.to(lesson.device).eval()
    return result
