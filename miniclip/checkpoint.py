"""Save and load a trained model as three plain files: model.safetensors, config.json, tokenizer.json.

safetensors holds only tensors, so loading a checkpoint someone sent you cannot run their code (a pickle
can). Every file is written atomically, so an interrupted save leaves the previous checkpoint intact.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from miniclip.config import CLIPConfig
from miniclip.fileio import atomic_path, atomic_write_text
from miniclip.model import MiniCLIP
from miniclip.tokenizer import Tokenizer

MODEL_FILE, CONFIG_FILE, TOKENIZER_FILE = "model.safetensors", "config.json", "tokenizer.json"


def save_tensors(tensors: dict[str, torch.Tensor], path, metadata: dict[str, str] | None = None) -> None:
    """Write a dict of tensors to a safetensors file atomically (tensors are made contiguous, on the CPU)."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def save(model: MiniCLIP, tokenizer: Tokenizer | None, directory) -> Path:
    """Write model.safetensors, config.json and tokenizer.json into `directory` (created if missing)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_tensors(model.state_dict(), directory / MODEL_FILE, metadata={"format": "miniclip"})
    atomic_write_text(directory / CONFIG_FILE, model.config.to_json())
    if tokenizer is not None:
        tokenizer.save(directory / TOKENIZER_FILE)
    return directory


def load_state_dict_checked(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """model.load_state_dict, but every missing, unexpected or mis-shaped tensor is named in one clear error."""
    expected = model.state_dict()
    problems = [f"missing tensor {k} (expected shape {list(v.shape)})" for k, v in expected.items() if k not in state]
    problems += [f"unexpected tensor {k} (shape {list(v.shape)})" for k, v in state.items() if k not in expected]
    problems += [
        f"tensor {k}: the {source} has shape {list(state[k].shape)}, the model expects {list(v.shape)}"
        for k, v in expected.items() if k in state and state[k].shape != v.shape
    ]
    if problems:
        raise ValueError(f"{source} does not fit the model:\n  " + "\n  ".join(problems))
    model.load_state_dict(state)


def load(directory, map_location: str = "cpu") -> tuple[MiniCLIP, Tokenizer | None]:
    """Read a directory written by `save` -> (model in eval mode, tokenizer or None if there is none)."""
    directory = Path(directory)
    for name in (MODEL_FILE, CONFIG_FILE):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory / name} not found: is {directory} a miniclip checkpoint (miniclip.save)?")
    try:
        config = CLIPConfig.from_dict(json.loads((directory / CONFIG_FILE).read_text()))
    except (json.JSONDecodeError, TypeError, ValueError) as e:
        raise ValueError(f"{directory / CONFIG_FILE}: not a valid miniclip config ({e})") from e
    model = MiniCLIP(config)
    load_state_dict_checked(model, load_file(str(directory / MODEL_FILE), device=map_location), str(directory / MODEL_FILE))
    tokenizer = Tokenizer.load(directory / TOKENIZER_FILE) if (directory / TOKENIZER_FILE).is_file() else None
    if tokenizer is not None and tokenizer.vocab_size > config.vocab_size:
        raise ValueError(
            f"{directory / TOKENIZER_FILE} has {tokenizer.vocab_size} tokens but the model's vocab_size is {config.vocab_size}"
        )
    return model.to(map_location).eval(), tokenizer
