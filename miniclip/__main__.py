"""The `miniclip` program (also `python -m miniclip`): the library's commands (miniclip.cli) plus `probe` from the
probes and `demo` and `standins` from the course, added here, above the three layers, where every layer may be
imported.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from miniclip import cli
from miniclip.checkpoint import read_jsonl, to_json
from miniclip.course.demo import demo
from miniclip.course.standins import build_standins
from miniclip.probes import FULL_SIZES, SMOKE_SIZES, run_probes


def _probe(args) -> int:
    model, tokenizer, run = cli.load_run(args.run_dir)
    history = read_jsonl(Path(args.run_dir) / "metrics.jsonl")
    results = run_probes(model, tokenizer, sizes=SMOKE_SIZES if args.smoke else FULL_SIZES, history=history,
                         batch_size=run.get("batch_size"), progress=sys.stderr.isatty())  # a bar in a terminal
    print(to_json(results, indent=None if args.json else 2))
    return 0


def _demo(args) -> int:
    print(to_json(demo(args.out, steps=args.steps, overwrite=args.overwrite)))
    return 0


def _standins(args) -> int:
    start = time.perf_counter()
    out = build_standins(args.out, images=args.images, seed=args.seed)
    print(f"stand-ins in {out} ({time.perf_counter() - start:.1f} s); what is there: {out / 'manifest.json'}")
    return 0


def add_probe_and_demo(sub) -> None:
    """Add the `probe`, `demo` and `standins` commands to the parser's subcommands."""
    p = sub.add_parser("probe", help="the failure-mode probes of a run, as numbers")
    p.add_argument("run_dir")
    p.add_argument("--json", action="store_true", help="one line of JSON")
    p.add_argument("--smoke", action="store_true", help="tiny probe sets (for tests)")
    p.set_defaults(func=_probe)
    p = sub.add_parser("demo", help="train shapes-tiny, evaluate it and draw the figures")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--overwrite", action="store_true", help="replace an earlier demo in --out")
    p.set_defaults(func=_demo)
    p = sub.add_parser("standins", help="offline stand-ins of COCO, CIFAR-10 and OpenAI's CLIP, in the real formats")
    p.add_argument("out", help="a new or empty folder (a finished one with the same arguments is reused)")
    p.add_argument("--images", type=int, default=2000, help="COCO images, at least 20 (default 2000)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_standins)


def main(argv=None) -> int:
    """The console script `miniclip`; returns the exit status."""
    return cli.main(argv, extra_commands=(add_probe_and_demo,))


if __name__ == "__main__":
    sys.exit(main())
