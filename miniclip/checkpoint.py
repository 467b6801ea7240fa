"""Everything a run writes to disk: the model, the training state, the metrics log, each file atomically.

A saved model is three plain files, what `miniclip.load` reads:

    model.safetensors   the weights (only tensors: loading one runs no code, as unpickling a .pt file can)
    config.json         the CLIPConfig
    tokenizer.json      the BPE tokenizer

A training run adds train_state.safetensors (the weights again, the optimiser's moments and the step, in ONE
file, so that `--resume` can never mix the weights of one step with the optimiser state of another) and
metrics.jsonl (one JSON object a line). Every file is written to a temporary file and renamed over the target:
an interrupted run (Ctrl-C, a killed Colab) leaves the old file or the new one, never half of one.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from miniclip.config import CLIPConfig
from miniclip.model import MiniCLIP
from miniclip.tokenizer import Tokenizer

MODEL_FILE, CONFIG_FILE, TOKENIZER_FILE = "model.safetensors", "config.json", "tokenizer.json"
TRAIN_STATE_FILE, METRICS_FILE = "train_state.safetensors", "metrics.jsonl"
TMP_SUFFIX = ".tmp"  # temporary files are ".<name>.<random>.tmp" beside their target


# ---------------------------------------------------------------------------------------------------- atomic writes

@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; on success it is flushed to disk and renamed to `path` (a rename
    within one file system is atomic), on error removed. The file gets the mode any new file gets (0666 less the
    umask), not mkstemp's private 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)  # the umask can only be read by setting it: set it back at once
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(path, text: str) -> None:
    """Write a text file (UTF-8) atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _json_safe(obj):
    """NaN and infinities become null (JSON has no NaN); numpy scalars and tuples become plain values."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:  # a numpy or torch scalar
        return _json_safe(obj.item())
    if isinstance(obj, Path):
        return str(obj)
    return obj


def to_json(obj, indent: int | None = 2) -> str:
    """Strict JSON text of obj: NaN and infinities are written as null, never as the invalid `NaN`."""
    return json.dumps(_json_safe(obj), indent=indent, allow_nan=False)


def atomic_write_json(path, obj) -> None:
    """Write a JSON file atomically (NaN -> null)."""
    atomic_write_text(path, to_json(obj))


def sweep_temporary_files(directory) -> list[Path]:
    """Remove the temporary files an interrupted atomic write left in `directory`; returns what was removed."""
    directory = Path(directory)
    stale = sorted(directory.glob(f".*{TMP_SUFFIX}")) if directory.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


# ---------------------------------------------------------------------------------------------------- JSON lines

def read_jsonl(path) -> list[dict]:
    """The rows of a JSON-lines file such as a run's metrics.jsonl ([] when the file does not exist). A torn last
    line (killed while writing it) is dropped with a warning; a bad line elsewhere is an error naming it."""
    path = Path(path)
    if not path.is_file():
        return []
    lines = [(i, line) for i, line in enumerate(path.read_text().splitlines(), 1) if line.strip()]
    rows = []
    for k, (i, line) in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            if k == len(lines) - 1:
                warnings.warn(f"{path}: dropped a torn last line {i} (an interrupted write)", stacklevel=2)
            else:
                raise ValueError(f"{path}, line {i}: not JSON ({e}); fix or remove that line") from e
    return rows


def write_jsonl(path, rows: list[dict]) -> None:
    """Write rows as a JSON-lines file, atomically."""
    atomic_write_text(path, "".join(to_json(r, indent=None) + "\n" for r in rows))


def steps_logged(directory, since: float = 0.0) -> int:
    """The last step in directory/metrics.jsonl while a run writes it: 0 when there is none yet, or (since, a
    time.time()) when the file is older than that: an earlier run's log, before the run is trained again."""
    path = Path(directory) / METRICS_FILE
    try:
        if path.stat().st_mtime < since:
            return 0
        with warnings.catch_warnings():  # a line half-written right now is no news: it is dropped, quietly
            warnings.simplefilter("ignore")
            rows = read_jsonl(path)
    except (OSError, ValueError):  # not written yet
        return 0
    return max((row.get("step", 0) for row in rows), default=0)


class MetricsLog:
    """metrics.jsonl as a run writes it: `rows` kept in memory, and each new row appended to the file (one line,
    flushed at once, so that a killed run loses at most the line being written). path None: in memory only. The
    file starts as `rows` (on resume: the log as it was at the checkpoint, rows past its step dropped)."""

    def __init__(self, path, rows: list[dict]):
        self.rows, self.file = rows, None
        if path is not None:
            write_jsonl(path, rows)
            self.file = open(path, "a")

    def write(self, row: dict) -> None:
        """Append one row (a dict of JSON values; NaN becomes null)."""
        self.rows.append(row)
        if self.file is not None:
            self.file.write(to_json(row, indent=None) + "\n")
            self.file.flush()

    def close(self) -> None:
        """Close the file (the rows stay)."""
        if self.file is not None:
            self.file.close()
            self.file = None


# ---------------------------------------------------------------------------------------------------- tensors

def save_tensors(tensors: dict[str, torch.Tensor], path, metadata: dict[str, str] | None = None) -> None:
    """Write a dict of tensors to a safetensors file atomically (tensors are made contiguous, on the CPU)."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_tensors(path, device: str = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a safetensors file; a damaged file is one error that names it."""
    path = Path(path)
    try:
        with safe_open(str(path), "pt") as f:
            metadata = f.metadata() or {}
        return load_file(str(path), device=device), metadata
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{path} is not a readable safetensors file ({e}); it may be damaged: "
                         "restore it, or train again") from e


def weights_digest(path) -> str:
    """sha256 of the tensors of a safetensors file (names, dtypes, shapes and values, in name order). The same
    weights give the same digest even where the files differ: safetensors writes its header in varying order."""
    tensors, digest = load_tensors(path)[0], hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name]
        digest.update(f"{name} {t.dtype} {list(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())  # the raw bytes, whatever the dtype
    return digest.hexdigest()


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


# ---------------------------------------------------------------------------------------------------- the model

def save(model: MiniCLIP, tokenizer: Tokenizer | None, directory, step: int | None = None) -> Path:
    """Write model.safetensors, config.json and tokenizer.json into `directory` (created if missing)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    metadata = {"format": "miniclip"} | ({"step": str(step)} if step is not None else {})
    save_tensors(model.state_dict(), directory / MODEL_FILE, metadata=metadata)
    atomic_write_text(directory / CONFIG_FILE, model.config.to_json())
    if tokenizer is not None:
        atomic_write_text(directory / TOKENIZER_FILE, tokenizer.to_json())
    return directory


def load_tokenizer(path) -> Tokenizer:
    """A saved tokenizer.json; a damaged file is one error that names it."""
    try:
        return Tokenizer.load(path)
    except FileNotFoundError:
        raise
    except Exception as e:  # tokenizers raises a bare Exception for malformed JSON
        raise ValueError(f"{path} is not a readable tokenizer ({e}); restore it, or train again") from e


def check_tokenizer(tokenizer, config: CLIPConfig, where: str) -> None:
    """ValueError (naming `where`) unless the tokenizer fits the model: ids below vocab_size, end id eot_token_id."""
    if tokenizer.vocab_size > config.vocab_size:
        raise ValueError(f"{where}: the tokenizer has {tokenizer.vocab_size} tokens but the model's vocab_size is "
                         f"{config.vocab_size}: the tokenizer and the model are from different runs")
    if tokenizer.end_id != config.eot_token_id:
        raise ValueError(f"{where}: the tokenizer's end token is id {tokenizer.end_id}, but the model reads its "
                         f"features at id {config.eot_token_id}: the tokenizer and the model are from different runs")


def load_config(directory) -> CLIPConfig:
    """The CLIPConfig of a directory written by `save` (its config.json), checked."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {directory} a miniclip checkpoint (miniclip.save)?")
    try:
        fields = json.loads(path.read_text())
        if isinstance(fields, dict) and fields.get("model_type") == "clip":
            raise ValueError("it is a transformers CLIP: load it with miniclip.hf.from_transformers")
        return CLIPConfig.from_dict(fields)
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: not a valid miniclip config ({e})") from e


def load(directory, map_location: str = "cpu") -> tuple[MiniCLIP, Tokenizer | None]:
    """Read a directory written by `save` -> (model in eval mode, tokenizer or None if there is none)."""
    directory = Path(directory)
    model_path, tokenizer_path = directory / MODEL_FILE, directory / TOKENIZER_FILE
    if not model_path.is_file():
        raise FileNotFoundError(f"{model_path} not found: is {directory} a miniclip checkpoint (miniclip.save)?")
    config = load_config(directory)
    model = MiniCLIP(config)
    state, _ = load_tensors(model_path, device=map_location)
    load_state_dict_checked(model, state, str(model_path))
    tokenizer = load_tokenizer(tokenizer_path) if tokenizer_path.is_file() else None
    if tokenizer is not None:
        check_tokenizer(tokenizer, config, str(tokenizer_path))
    return model.to(map_location).eval(), tokenizer


# ---------------------------------------------------------------------------------------------------- train state

def save_train_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int, path) -> None:
    """The weights, the optimiser's moments and the step in one safetensors file (one atomic rename): tensors
    "model.<name>" and "optimizer.<param index>.<name>"; the step and the hyper-parameters in the metadata (JSON)."""
    state = optimizer.state_dict()
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors |= {f"optimizer.{i}.{k}": v for i, s in state["state"].items() for k, v in s.items() if torch.is_tensor(v)}
    save_tensors(tensors, path, metadata={"step": str(step), "param_groups": json.dumps(state["param_groups"])})


def load_train_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, path, device: str = "cpu") -> int:
    """Restore what save_train_state wrote into model and optimizer; returns the step to continue from."""
    tensors, meta = load_tensors(path, device=device)
    if "step" not in meta or "param_groups" not in meta:
        raise ValueError(f"{path}: not a miniclip train state (no step in its metadata)")
    weights = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    load_state_dict_checked(model, weights, str(path))
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            i, name = key.removeprefix("optimizer.").split(".", 1)
            state.setdefault(int(i), {})[name] = value
    groups = json.loads(meta["param_groups"])
    for g in groups:
        g["betas"] = tuple(g["betas"])
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    return int(meta["step"])
