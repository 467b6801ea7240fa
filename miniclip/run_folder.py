"""The run folder: what run.json records, whether a folder holds a finished run, and the checks before a run is
written there (train() and load_or_train() in miniclip.train use them).

    run_is_finished(cfg, "runs/tiny")   # the same recipe, a model, and the evaluation after the last step
    read_run_record("runs/tiny")        # run.json as a dict: the TrainConfig's fields, world_size, the start's digest

A folder is a run's when it holds run.json or only files a run writes (RUN_FILES): --overwrite empties no other.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import warnings
from pathlib import Path

from miniclip.checkpoint import (CONFIG_FILE, METRICS_FILE, MODEL_FILE, TMP_SUFFIX, TOKENIZER_FILE,
                                 TRAIN_STATE_FILE, read_jsonl, sweep_temporary_files, to_json, weights_digest)
from miniclip.config import TrainConfig
from miniclip.locks import LOCK_FILE

RUN_FILE = "run.json"
RUN_FILES = {MODEL_FILE, CONFIG_FILE, TOKENIZER_FILE, TRAIN_STATE_FILE, METRICS_FILE, RUN_FILE, LOCK_FILE}


def recipe(cfg: TrainConfig) -> dict:
    """cfg's fields as run.json stores them (JSON values: tuples become lists)."""
    return json.loads(to_json(dataclasses.asdict(cfg)))


def run_record(cfg: TrainConfig, world: int = 1) -> dict:
    """run.json: cfg's fields, the number of processes and the digests of what cfg's paths point to: the weights a
    fine-tune starts from (init_from_sha256), the manifests of a cache it trains on (data_sha256)."""
    start = Path(cfg.init_from) / MODEL_FILE if cfg.init_from else None
    digest = {"init_from_sha256": weights_digest(start)} if start and start.is_file() else {}
    data = Path(cfg.data)
    manifests = sorted([*data.glob("manifest.json"), *data.glob("*/manifest.json")]) if cfg.data != "shapes" else []
    if manifests:  # a cache, with its splits: each manifest says what the cache holds (source, sizes, counts)
        digest["data_sha256"] = hashlib.sha256(b"".join(m.read_bytes() for m in manifests)).hexdigest()
    return recipe(cfg) | {"world_size": world} | digest


def same_recipe(out, cfg: TrainConfig) -> bool:
    """Whether run.json in `out` records cfg; a field it lacks (added to TrainConfig later) counts as its default.
    What cfg's paths point to is compared by content, not by path or file times: a fine-tune is stale once its start
    (cfg.init_from) holds another model, and a runs folder copied elsewhere (another checkout, Drive) keeps its runs."""
    saved, ours, defaults = read_run_record(out), run_record(cfg), run_record(TrainConfig())
    saved.pop("world_size", None)  # the same recipe on more GPUs: the global batch is cfg.batch_size either way
    for path, digest in (("init_from", "init_from_sha256"), ("data", "data_sha256")):
        if digest in saved and digest in ours:
            if saved[digest] == ours[digest]:  # the same weights or cache, wherever it lies now
                saved[path] = ours[path]
        else:  # a start that is gone (the run stands on its own), or a record older than the digest: by path
            saved.pop(digest, None)
            ours.pop(digest, None)
    return bool(saved) and set(saved) <= set(ours) and all(saved.get(k, defaults.get(k)) == v for k, v in ours.items())


def read_run_record(out) -> dict:
    """run.json of a run folder as a dict ({} when there is none); invalid JSON is an error that names the file."""
    path = Path(out) / RUN_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}); restore it or delete it") from e


def run_is_finished(cfg: TrainConfig, out) -> bool:
    """Whether `out` holds a finished run of exactly `cfg`: same run.json, a model, and the log of the evaluation
    after the last step (written after the last checkpoint: a run killed before or during either is unfinished)."""
    out = Path(out)
    try:
        same = same_recipe(out, cfg)
        history = read_jsonl(out / METRICS_FILE)
    except (OSError, ValueError):
        return False
    return same and (out / MODEL_FILE).is_file() and evaluated(history, cfg.steps)


def evaluated(history: list[dict], step: int) -> bool:
    """Whether the log holds the evaluation at `step`: a row of val_* metrics (a training row has the loss)."""
    return any(row.get("step") == step and "loss" not in row for row in history)


def check_run_dir(cfg: TrainConfig, out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to train over an existing run unless told to (--resume continues it, --overwrite replaces it). Deletes
    nothing; creates `out` when it is missing, so that a folder that cannot be written fails now, before any work."""
    if resume and overwrite:
        raise ValueError("--resume continues the run in the folder and --overwrite replaces it: choose one")
    if resume:
        if not (out / TRAIN_STATE_FILE).is_file():
            raise FileNotFoundError(f"--resume: {out} holds no checkpoint ({TRAIN_STATE_FILE} is missing); "
                                    "train without --resume to start a new run")
        saved = read_run_record(out)
        if saved.get("preset", cfg.preset) != cfg.preset:
            raise ValueError(f"--resume: the run in {out} was trained with --preset {saved['preset']}, not "
                             f"{cfg.preset}; resume it with --preset {saved['preset']}")
        ours = recipe(cfg)  # the fields only: the start's digest is compared by load_or_train, not warned about
        for name in sorted(set(saved) & set(ours)):
            if saved[name] != ours[name]:  # allowed (e.g. more steps), but never silently: one run, two recipes
                warnings.warn(f"--resume with --{name.replace('_', '-')} {ours[name]} (the run in {out} was trained "
                              f"with {saved[name]})", stacklevel=3)
    elif holds_files(out) and not overwrite:
        raise FileExistsError(f"{out} is not empty: continue its run with --resume, replace it with --overwrite, "
                              "or choose another --out")
    elif overwrite and (foreign := not_a_run(out)):  # --overwrite empties the folder: only ever a run's
        raise FileExistsError(f"--overwrite replaces a run, but {out} holds no {RUN_FILE} and files no run writes "
                              f"({', '.join(foreign[:3])}): choose another --out, or empty that folder yourself")
    out.mkdir(parents=True, exist_ok=True)


def not_a_run(out: Path) -> list[str]:
    """The names in `out` that a run does not write, when it holds no run.json ([] for a run, an empty folder or
    none): a folder of other work (a cache, a project, `--out .`) that --overwrite must not empty."""
    if not out.is_dir() or (out / RUN_FILE).is_file():
        return []
    return sorted(p.name for p in out.iterdir() if p.name not in RUN_FILES and not p.name.endswith(TMP_SUFFIX))


def holds_files(out: Path) -> bool:
    """Whether the folder holds anything but a lock (a live one refuses the run later; a dead one is taken over)."""
    return out.is_dir() and any(path.name != LOCK_FILE for path in out.iterdir())


def prepare_run_dir(out: Path, resume: bool) -> None:
    """After check_run_dir and once the data has loaded: remove what a killed run left half-written (resume), or
    empty the folder (--overwrite: the old run goes only now, when the new one can start)."""
    if resume:
        sweep_temporary_files(out)
        return
    for path in out.iterdir():
        if path.name != LOCK_FILE:  # ours: held until the new run ends
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
