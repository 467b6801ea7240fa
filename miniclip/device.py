"""The machine a run computes on: which device, in which precision, with which seeds, in how many processes.

    device = pick_device("auto")                 # cuda when a GPU is visible, else cpu
    autocast, dtype = precision(device)          # bf16 / fp16 with a GradScaler / fp32, by what the hardware has
    seed_everything(0)                           # Python, numpy and torch: the same seed gives the same run
    rank, world = start_processes()              # (0, 1), or this process's place under torchrun
"""
from __future__ import annotations

import os
import random

import numpy as np
import torch
import torch.distributed as dist


def pick_device(name: str = "auto") -> torch.device:
    """"auto" -> cuda when a GPU is visible, else cpu; a named device that is not there is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name}: not a device torch knows; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: this machine has no CUDA GPU that torch can use; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s), numbered from 0")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {name}: this machine has no Apple GPU that torch can use; use --device cpu")
    return device


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's generators: the same seed gives the same run."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def precision(device: torch.device):
    """(autocast context, dtype) for training on `device`: bf16 where the GPU has bf16 units (compute capability
    >= 8.0: A100, H100, L4); fp16 with a GradScaler on older GPUs such as Colab's T4 (7.5), which has no bf16
    convolution kernels; fp32 on the CPU (bf16 autocast measured 1.3x slower on a 2-core CPU)."""
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.get_device_capability(device) >= (8, 0) else torch.float16
        return torch.autocast("cuda", dtype=dtype), dtype
    return torch.autocast("cpu", enabled=False), torch.float32


def process_device(name: str, world: int) -> torch.device:
    """This process's device: pick_device(name), or under torchrun the GPU of its LOCAL_RANK; TF32 matmuls on."""
    device = pick_device(name)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    return device


def start_processes() -> tuple[int, int]:
    """(rank, world size); starts the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)
