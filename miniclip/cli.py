"""The `miniclip` command line: `miniclip --help` lists the commands.

    miniclip prepare shapes|coco ...   decode a data source once into an image cache
    miniclip train --preset shapes-tiny --data shapes --out runs/tiny
    miniclip eval runs/tiny --json     zero-shot accuracy and retrieval recall as one JSON object
    miniclip export-hf runs/coco out/  a transformers CLIPModel directory (coco-small or coco-base: no conv stem)
    miniclip probe runs/tiny --json    the failure-mode probes (the paper's limitations) as numbers
    miniclip demo --out runs/demo      train, evaluate and draw the figures, in about a minute on a CPU

Each command is a thin wrapper over a function of the package, so a notebook can call the same thing (`probe`
and `demo` belong to the layers above: miniclip/__main__.py adds them). A mistake of the user (a bad flag, a
missing or damaged file, a folder that would be overwritten) prints one line that names the flag or file and
what to do, and exits with status 2; `--debug` (or MINICLIP_DEBUG=1) shows the Python traceback instead.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import warnings
from pathlib import Path

from miniclip.checkpoint import load, to_json
from miniclip.config import PRESETS, TrainConfig
from miniclip.data.cache import IncompleteCacheError, build_cache, build_shapes_cache
from miniclip.data.coco import open_source
from miniclip.data.shapes import RENDITIONS
from miniclip.evaluate import evaluate_suite
from miniclip.run_folder import read_run_record
from miniclip.train import train

USER_ERRORS = (ValueError, OSError, FloatingPointError, IncompleteCacheError)  # reported in one line, exit 2


def _train(args) -> int:
    # the flags given, by their TrainConfig field: one left off (None, or False for a switch) keeps the recipe's value
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    overrides = {k: v for k, v in vars(args).items() if k in fields and v is not None and v is not False}
    # --resume continues the run's own recipe (run.json), not the preset's: a flag given again changes it (train warns)
    saved = {k: v for k, v in read_run_record(args.out).items() if k in fields} if args.resume else {}
    cfg = TrainConfig(**{**saved, **overrides}) if saved else \
        TrainConfig.for_preset(overrides.pop("preset", "shapes-tiny"), **overrides)  # checks every flag before any work
    if cfg.batch_size == 1:
        print("miniclip train: warning: --batch-size 1 has no negatives, so its loss is always 0 and nothing is "
              "learned; use 32 or more", file=sys.stderr)
    result = train(cfg, out=args.out, resume=args.resume, overwrite=args.overwrite)
    final = {k: v for r in result.history for k, v in r.items()}
    print(to_json({k: round(v, 4) if isinstance(v, float) else v for k, v in final.items()}, indent=None))
    return 0


def load_run(run_dir):
    """(model, tokenizer, run.json as a dict) of a run directory; a folder without a tokenizer is an error."""
    model, tokenizer = load(run_dir)
    if tokenizer is None:
        raise FileNotFoundError(f"{Path(run_dir) / 'tokenizer.json'} not found: is {run_dir} a miniclip run directory?")
    return model, tokenizer, read_run_record(run_dir)


def _eval(args) -> int:
    model, tokenizer, run = load_run(args.run_dir)
    data = args.data or run.get("data", "shapes")
    if args.data is None and data != "shapes" and not Path(data).exists():  # a relative path, seen from elsewhere
        raise FileNotFoundError(f"{args.run_dir} was trained on {data}, which is not there from this folder: pass "
                                "--data with the path of that cache (or of another one) to evaluate on")
    default = TrainConfig()  # a run.json from before these fields: the sizes it was evaluated at
    sizes = dict(num_images=run.get("eval_images", default.eval_images),
                 zeroshot_per_class=run.get("eval_per_class", default.eval_per_class))
    # the sizes and seed of the run's own evaluations: on --split val, `miniclip eval` gives its last logged numbers
    metrics = evaluate_suite(model, tokenizer, data, seed=run.get("seed", 0), split=args.split, **sizes)
    metrics.update(data=data, split=args.split)
    print(to_json(metrics, indent=None if args.json else 2))
    return 0


def _export_hf(args) -> int:
    from miniclip.hf import to_transformers  # imported here: transformers takes seconds to import

    out, run = Path(args.out_dir).resolve(), Path(args.run_dir).resolve()
    if out == run or out in run.parents:  # --overwrite would delete the run (and, above it, its neighbours)
        raise ValueError(f"OUT_DIR {args.out_dir} is the run directory {args.run_dir} or a folder that holds it; "
                         "choose a folder of its own")
    model, tokenizer, _ = load_run(args.run_dir)
    to_transformers(model, tokenizer, args.out_dir, overwrite=args.overwrite)
    print(f"wrote {args.out_dir}: load it with transformers.CLIPModel.from_pretrained({str(args.out_dir)!r})")
    return 0


def _prepare_coco(args) -> int:
    records, desc = open_source(
        args.source, split=args.split, hf_dataset=args.hf_dataset, hf_data_files=args.hf_data_files,
        annotations=args.annotations, images=args.images, karpathy_json=args.karpathy_json, limit=args.limit,
    )  # fmt: skip
    build_cache(records, args.out, size=args.size, workers=args.workers, limit=args.limit, source=desc)
    return 0


def _prepare_shapes(args) -> int:
    # streamed to disk one chunk at a time (bounded memory); rerunning an interrupted command resumes it
    m = build_shapes_cache(args.out, args.n, args.seed, image_size=args.size, word_fraction=args.word_fraction,
                           rendition=args.rendition)  # fmt: skip
    print(f"cache: {m['num_images']} shapes images, {m['num_captions']} captions at {m['size']} px in {args.out}")
    return 0


def _add_prepare(sub) -> None:
    prepare = sub.add_parser("prepare", help="decode a data source once into an image cache")
    datasets = prepare.add_subparsers(dest="dataset", required=True)
    coco = datasets.add_parser("coco", help="COCO captions (Hugging Face Hub, official files or Karpathy JSON)")
    coco.add_argument("--source", choices=("hf", "coco", "karpathy"), default="hf")
    coco.add_argument("--hf-dataset", help="Hub id or builder (default Multimodal-Fatima/COCO_captions_<split>)")
    coco.add_argument("--hf-data-files", nargs="+", help="data files for --hf-dataset parquet (local copies)")
    coco.add_argument("--annotations", help="captions_train2017.json or captions_val2017.json (--source coco)")
    coco.add_argument("--images", help="image folder or zip (coco), root of train2014/val2014 (karpathy)")
    coco.add_argument("--karpathy-json", help="dataset_coco.json (--source karpathy)")
    coco.add_argument("--split", choices=("train", "val", "test"), help="default: train (coco: from the file name)")
    coco.add_argument("--limit", type=_positive, help="read at most N images")
    coco.add_argument("--size", type=_positive, default=64, help="image side in pixels (default 64)")
    coco.add_argument("--workers", type=_positive, help="decoder processes (default: all cores)")
    coco.add_argument("--out", required=True, help="cache folder")
    coco.set_defaults(func=_prepare_coco)
    shapes = datasets.add_parser("shapes", help="the procedurally generated shapes world")
    shapes.add_argument("--n", type=_positive, default=50_000, help="number of images (default 50000)")
    shapes.add_argument("--size", type=_positive, default=32, help="image side in pixels (default 32)")
    shapes.add_argument("--seed", type=int, default=0)
    shapes.add_argument("--word-fraction", type=float, default=0.0, help="share of single objects with a word")
    shapes.add_argument("--rendition", default="normal", choices=RENDITIONS)
    shapes.add_argument("--out", required=True, help="cache folder")
    shapes.set_defaults(func=_prepare_shapes)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text}")
    return value


def build_parser(extra_commands=()) -> argparse.ArgumentParser:
    """The argument parser; extra_commands: functions add(subparsers) that add more commands (see __main__)."""
    parser = argparse.ArgumentParser(prog="miniclip", description="A small, readable CLIP to learn from.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_prepare(sub)

    p = sub.add_parser("train", help="train a model (torchrun for several GPUs)")
    p.add_argument("--preset", choices=PRESETS, help="default: shapes-tiny (with --resume: the run's)")
    p.add_argument("--data", help="'shapes' or a cache directory from `miniclip prepare`")
    p.add_argument("--out", required=True, help="the run directory (must be empty, unless --resume or --overwrite)")
    p.add_argument("--steps", type=int, help="optimiser steps (default: the preset's; shapes-tiny 1000)")
    p.add_argument("--batch-size", type=int, help="pairs per step, the N of the N x N similarity matrix")
    p.add_argument("--lr", type=float, help="peak learning rate, after the warmup (default: the preset's)")
    p.add_argument("--seed", type=int, help="seeds the data, the initial weights and the batches (default 0)")
    p.add_argument("--num-images", type=int, help="training images (shapes world: how many to draw, default "
                   "50000; a cache: its first N; 0: all)")
    p.add_argument("--word-fraction", type=float, help="shapes world: share of images with a word written on them")
    p.add_argument("--hard-negatives", action="store_true", help="add relation-swapped captions as negatives")
    p.add_argument("--eval-every", type=int, help="evaluate on held-out data every N steps (0: only at the end)")
    p.add_argument("--eval-images", type=int, help="held-out images of each evaluation (default 1000)")
    p.add_argument("--eval-per-class", type=int, help="shapes world: zero-shot images per class of each "
                   "evaluation (default 20; 0: none)")
    p.add_argument("--checkpoint-every", type=int, help="write the resumable checkpoint every N steps")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--init-from", help="a run folder to start from (fine-tune its weights and tokenizer)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="delete what the run directory holds and start again")
    p.set_defaults(func=_train)

    p = sub.add_parser("eval", help="zero-shot accuracy and retrieval recall of a run")
    p.add_argument("run_dir")
    p.add_argument("--data", help="evaluate on this data instead of the run's own")
    p.add_argument("--split", choices=("val", "test"), default="val",
                   help="held-out split (default val, as training evaluates; test: DIR/test of a cache, e.g. COCO's "
                        "5k Karpathy test images)")
    p.add_argument("--json", action="store_true", help="one line of JSON")
    p.set_defaults(func=_eval)

    p = sub.add_parser("export-hf", help="write a transformers CLIPModel directory")
    p.add_argument("run_dir")
    p.add_argument("out_dir", help="a new or empty folder (not the run directory)")
    p.add_argument("--overwrite", action="store_true", help="replace what out_dir holds")
    p.set_defaults(func=_export_hf)
    for add in extra_commands:
        add(sub)
    return parser


def main(argv=None, extra_commands=()) -> int:
    """Run one command; returns the exit status (0 done, 2 a user error reported in one line)."""
    args = build_parser(extra_commands).parse_args(argv)
    try:
        with warnings.catch_warnings():  # a warning is one line that names the command, not Python's file:line
            warnings.showwarning = lambda message, *_, **__: print(f"miniclip {args.command}: warning: {message}",
                                                                   file=sys.stderr)
            return int(args.func(args) or 0)
    except USER_ERRORS as e:
        if args.debug or os.environ.get("MINICLIP_DEBUG") == "1":
            raise
        print(f"miniclip {args.command}: {e}", file=sys.stderr)
        return 2
