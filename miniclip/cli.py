"""The `miniclip` command line: `miniclip --help` lists the commands.

    miniclip prepare shapes|coco ...   decode a data source once into an image cache
    miniclip train --preset shapes-tiny --data shapes --out runs/tiny
    miniclip eval runs/tiny --json     zero-shot accuracy and retrieval recall as one JSON object
    miniclip probe runs/tiny --json    the failure-mode probes (the paper's limitations) as numbers
    miniclip export-hf runs/tiny out/  a transformers CLIPModel directory
    miniclip demo --out runs/demo      train, evaluate and draw the figures, in about two minutes on a CPU

Each command is a thin wrapper over a function of the package, so a notebook can call the same thing.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _train(args) -> int:
    from miniclip.train import TrainConfig, train

    overrides = {k: v for k, v in dict(
        data=args.data, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
        hard_negatives=args.hard_negatives or None, word_fraction=args.word_fraction, num_images=args.num_images,
        eval_every=args.eval_every, checkpoint_every=args.checkpoint_every, compile=args.compile or None,
        device=args.device,
    ).items() if v is not None}
    cfg = TrainConfig.preset(args.preset, **overrides)
    result = train(cfg, out=args.out, resume=args.resume)
    final = {k: v for r in result.history for k, v in r.items()}
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in final.items()}))
    return 0


def _load_run(run_dir):
    import miniclip

    model, tokenizer = miniclip.load(run_dir)
    if tokenizer is None:
        raise SystemExit(f"{run_dir}: no tokenizer.json; is this a miniclip run directory?")
    run = json.loads((Path(run_dir) / "run.json").read_text()) if (Path(run_dir) / "run.json").is_file() else {}
    return model, tokenizer, run


def _eval(args) -> int:
    from miniclip.evaluate import evaluate_suite

    model, tokenizer, run = _load_run(args.run_dir)
    data = args.data or run.get("data", "shapes")
    metrics = evaluate_suite(model, tokenizer, data, seed=run.get("seed", 0))
    metrics["data"] = data
    print(json.dumps(metrics, indent=None if args.json else 2))
    return 0


def _probe(args) -> int:
    from miniclip.probes import run_probes
    from miniclip.train import read_jsonl

    model, tokenizer, run = _load_run(args.run_dir)
    history = read_jsonl(Path(args.run_dir) / "metrics.jsonl")
    results = run_probes(model, tokenizer, smoke=args.smoke, history=history, batch_size=run.get("batch_size"))
    print(json.dumps(results, indent=None if args.json else 2))
    return 0


def _export_hf(args) -> int:
    from miniclip.hf import to_transformers

    model, tokenizer, _ = _load_run(args.run_dir)
    to_transformers(model, tokenizer, args.out_dir)
    print(f"wrote {args.out_dir}: load it with transformers.CLIPModel.from_pretrained({str(args.out_dir)!r})")
    return 0


def _demo(args) -> int:
    from miniclip.demo import demo

    metrics = demo(args.out, steps=args.steps)
    print(json.dumps(metrics, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="miniclip", description="A small, readable CLIP to learn from.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    from miniclip.data import cache

    cache.add_prepare_parser(sub)

    p = sub.add_parser("train", help="train a model (torchrun for several GPUs)")
    p.add_argument("--preset", default="shapes-tiny", help="shapes-tiny, coco-small or coco-base")
    p.add_argument("--data", help="'shapes' or a cache directory from `miniclip prepare`")
    p.add_argument("--out", required=True, help="the run directory")
    p.add_argument("--steps", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--num-images", type=int, help="shapes world: number of training images")
    p.add_argument("--word-fraction", type=float, help="shapes world: share of images with a word written on them")
    p.add_argument("--hard-negatives", action="store_true", help="add relation-swapped captions as negatives")
    p.add_argument("--eval-every", type=int)
    p.add_argument("--checkpoint-every", type=int)
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
    p.set_defaults(func=_train)

    p = sub.add_parser("eval", help="zero-shot accuracy and retrieval recall of a run")
    p.add_argument("run_dir")
    p.add_argument("--data", help="evaluate on this data instead of the run's own")
    p.add_argument("--json", action="store_true", help="one line of JSON")
    p.set_defaults(func=_eval)

    p = sub.add_parser("probe", help="the failure-mode probes of a run, as numbers")
    p.add_argument("run_dir")
    p.add_argument("--json", action="store_true", help="one line of JSON")
    p.add_argument("--smoke", action="store_true", help="tiny probe sets (for tests)")
    p.set_defaults(func=_probe)

    p = sub.add_parser("export-hf", help="write a transformers CLIPModel directory")
    p.add_argument("run_dir")
    p.add_argument("out_dir")
    p.set_defaults(func=_export_hf)

    p = sub.add_parser("demo", help="train shapes-tiny, evaluate it and draw the figures")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--steps", type=int, default=None)
    p.set_defaults(func=_demo)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
