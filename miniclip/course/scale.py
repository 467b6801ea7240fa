"""How big should a lesson be on this machine? One answer, used by every notebook.

    scale = miniclip.scale.pick_scale()
    scale.name     # "gpu" (COCO captions), "laptop" (the shapes world on a CPU) or "smoke" (CI: tiny, every cell runs)

The rule: MINICLIP_SMOKE=1 (set by `make test`) gives "smoke"; a CUDA GPU that can reach the Hugging Face Hub
gives "gpu"; anything else gives "laptop". MINICLIP_SCALE=gpu|laptop|smoke overrides the rule.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Scale:
    name: str  # "gpu", "laptop" or "smoke"
    data: str  # "coco" or "shapes"
    preset: str  # the model preset (miniclip.CLIPConfig.preset)
    steps: int  # training steps of the main run
    num_images: int  # training images (shapes world; 0 = the whole COCO train split)
    eval_images: int  # held-out images for evaluation and figures
    per_class: int  # held-out images per class for zero-shot and probes
    device: str
    runs_dir: Path  # where runs and checkpoints are kept

    @property
    def smoke(self) -> bool:
        return self.name == "smoke"


def _hub_reachable(timeout: float = 2.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _repo_root() -> Path:
    here = Path(__file__).resolve().parents[2]  # the repository root, when miniclip is installed from a clone
    return here if (here / "pyproject.toml").is_file() else Path.cwd()


def pick_scale(name: str | None = None) -> Scale:
    """The lesson scale for this machine (see the module docstring); `name` forces one."""
    import torch

    name = name or os.environ.get("MINICLIP_SCALE")
    if name is None:
        if os.environ.get("MINICLIP_SMOKE") == "1":
            name = "smoke"
        elif torch.cuda.is_available() and _hub_reachable():
            name = "gpu"
        else:
            name = "laptop"
    runs = Path(os.environ.get("MINICLIP_RUNS", _repo_root() / "runs"))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "gpu":
        return Scale("gpu", "coco", "coco-small", 5_000, 40_000, 5_000, 100, device, runs / "gpu")
    if name == "laptop":
        return Scale("laptop", "shapes", "shapes-tiny", 1_000, 50_000, 1_000, 20, device, runs / "laptop")
    if name == "smoke":
        return Scale("smoke", "shapes", "shapes-tiny", 40, 3_000, 64, 4, device, runs / "smoke")
    raise ValueError(f"unknown scale {name!r}; use gpu, laptop or smoke")


def start_lesson(seed: int = 0, name: str | None = None) -> Scale:
    """The first line of every notebook: pick the scale, seed every generator, print one line about both."""
    import random

    import numpy as np
    import torch

    scale = pick_scale(name)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    where = {"gpu": "COCO captions on the GPU", "laptop": "the shapes world on this CPU",
             "smoke": "smoke test: the smallest sizes that run every cell"}[scale.name]
    print(f"miniclip scale: {scale.name} ({where}); device {scale.device}; seed {seed}")
    return scale
