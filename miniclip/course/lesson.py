"""How big should a lesson be on this machine? One answer, used by every notebook.

    lesson = start_lesson(seed=0)   # the first line of every notebook
    lesson.name     # "gpu" (COCO captions), "laptop" (the shapes world on a CPU), "smoke" (CI: tiny, every cell
                    # runs) or "rehearsal" (the GPU lesson's cells at smoke sizes, on local stand-ins of its data)

The rule: MINICLIP_SMOKE=1 (set by `make test`) gives "smoke"; a CUDA GPU that can reach the Hugging Face Hub
gives "gpu"; anything else gives "laptop". MINICLIP_LESSON=gpu|laptop|smoke|rehearsal overrides the rule.

Remote data (COCO from the Hub, CIFAR-10, OpenAI's CLIP) is downloaded in the GPU lesson. The rehearsal lesson
reads local stand-ins of all three instead (miniclip.course.standins, in the real formats; its numbers mean
nothing): from MINICLIP_STANDINS=DIR, else from runs/rehearsal/standins, built there on first use.
`MINICLIP_LESSON=gpu MINICLIP_STANDINS=DIR` is the full GPU lesson on stand-ins (a GPU without internet).
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import torch

from miniclip.device import precision, seed_everything

LESSONS = ("gpu", "laptop", "smoke", "rehearsal")
REHEARSAL_STANDIN_IMAGES = 400  # COCO stand-in images the rehearsal builds: 320 train (a batch of 256), 40 val, 40 test


@dataclass(frozen=True)
class Lesson:
    """The sizes of a lesson on this machine: which data, which model, how long the main run trains."""

    name: str  # "gpu", "laptop", "smoke" or "rehearsal"
    data: str  # "coco" or "shapes"
    preset: str  # the model preset (miniclip.CLIPConfig.preset)
    steps: int  # training steps of the main run
    num_images: int  # training images (shapes world; 0 = the whole COCO train split)
    eval_images: int  # held-out images for evaluation and figures
    per_class: int  # held-out images per class for zero-shot and probes
    device: str  # "cuda" or "cpu"
    runs_dir: Path  # where runs and checkpoints are kept
    batch_size: int | None = None  # pairs per step of the main run (None: the preset's recipe)
    standins: Path | None = None  # a build_standins folder read instead of the network (None: download)

    @property
    def smoke(self) -> bool:
        """True for the smoke test and the rehearsal (CI): the smallest sizes that still run every cell."""
        return self.name in ("smoke", "rehearsal")


def _hub_reachable(timeout: float = 2.0) -> bool:
    """Whether huggingface.co answers within `timeout` seconds (False when HF_HUB_OFFLINE=1)."""
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _repo_root() -> Path:
    """The repository root when miniclip is installed from a clone, else the current folder."""
    here = Path(__file__).resolve().parents[2]
    return here if (here / "pyproject.toml").is_file() else Path.cwd()


def pick_lesson(name: str | None = None) -> Lesson:
    """The lesson sizes for this machine (see the module docstring); `name` (one of LESSONS) forces one."""
    if "MINICLIP_SCALE" in os.environ and "MINICLIP_LESSON" not in os.environ:
        raise ValueError("MINICLIP_SCALE was renamed MINICLIP_LESSON (the lesson's size; 'scale' is 1/temperature): "
                         f"set MINICLIP_LESSON={os.environ['MINICLIP_SCALE']} instead")
    name = name or os.environ.get("MINICLIP_LESSON")
    if name is None:
        if os.environ.get("MINICLIP_SMOKE") == "1":
            name = "smoke"
        elif torch.cuda.is_available() and _hub_reachable():
            name = "gpu"
        else:
            name = "laptop"
    runs = Path(os.environ.get("MINICLIP_RUNS", _repo_root() / "runs"))
    standins = Path(os.environ["MINICLIP_STANDINS"]) if os.environ.get("MINICLIP_STANDINS") else None
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "gpu":  # on stand-ins, in a folder of its own: a run on them must never pass for a run on COCO
        return Lesson("gpu", "coco", "coco-small", 5_000, 40_000, 5_000, 100, device,
                      runs / ("gpu-standins" if standins else "gpu"), standins=standins)
    if name == "laptop":
        return Lesson("laptop", "shapes", "shapes-tiny", 1_000, 50_000, 1_000, 20, device, runs / "laptop")
    if name == "smoke":
        return Lesson("smoke", "shapes", "shapes-tiny", 40, 3_000, 64, 4, device, runs / "smoke")
    if name == "rehearsal":
        return Lesson("rehearsal", "coco", "coco-small", 4, 0, 64, 4, device, runs / "rehearsal", batch_size=16,
                      standins=standins or runs / "rehearsal" / "standins")
    raise ValueError(f"unknown lesson {name!r} (the argument or MINICLIP_LESSON): use {', '.join(LESSONS)}")


def on_shapes(lesson: Lesson) -> Lesson:
    """The shapes-world lesson that goes with `lesson` (the probes of notebooks 07-08 need the shapes world): the
    lesson itself on shapes; for COCO the laptop sizes (gpu) or the smoke sizes (rehearsal)."""
    if lesson.data == "shapes":
        return lesson
    return pick_lesson("smoke" if lesson.smoke else "laptop")


def start_lesson(seed: int = 0, name: str | None = None) -> Lesson:
    """The first line of every notebook: pick the lesson sizes, seed every generator, print one line about both."""
    lesson = pick_lesson(name)
    seed_everything(seed)
    where = {"gpu": "COCO captions on the GPU", "laptop": "the shapes world on this CPU",
             "smoke": "smoke test: the smallest sizes that run every cell",
             "rehearsal": "the GPU lesson's cells at smoke sizes"}[lesson.name]
    if lesson.standins is not None:
        meaning = "its numbers mean nothing" if lesson.smoke else "its numbers are about them, not COCO"
        where += f"; COCO, CIFAR-10 and OpenAI's CLIP replaced by stand-ins in {lesson.standins}: {meaning}"
    dtype = str(precision(torch.device(lesson.device))[1]).removeprefix("torch.")  # what training computes in
    print(f"miniclip lesson: {lesson.name} ({where}); device {lesson.device}, training in {dtype}; seed {seed}")
    if lesson.name == "gpu" and lesson.device == "cpu":
        print(f"warning: the GPU lesson on a CPU: its {lesson.steps:,}-step {lesson.preset} run would take hours here; "
              "MINICLIP_LESSON=laptop (or rehearsal, its cells at smoke sizes) fits a CPU")
    return lesson
