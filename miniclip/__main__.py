"""The `miniclip` program (also `python -m miniclip`): the library's commands plus `probe` and `demo`.

This is the entry point, above the three layers: miniclip.cli holds the library's commands (prepare, train,
eval, export-hf); `probe` comes from the probes and `demo` from the course, so it is added here, where every
layer may be imported.
"""
from __future__ import annotations

import sys
from pathlib import Path

from miniclip import cli
from miniclip.checkpoint import read_jsonl, to_json
from miniclip.course.demo import demo
from miniclip.probes import FULL_SIZES, SMOKE_SIZES, run_probes


def _probe(args) -> int:
    model, tokenizer, run = cli.load_run(args.run_dir)
    history = read_jsonl(Path(args.run_dir) / "metrics.jsonl")
    results = run_probes(model, tokenizer, sizes=SMOKE_SIZES if args.smoke else FULL_SIZES, history=history,
                         batch_size=run.get("batch_size"))
    print(to_json(results, indent=None if args.json else 2))
    return 0


def _demo(args) -> int:
    print(to_json(demo(args.out, steps=args.steps, overwrite=args.overwrite)))
    return 0


def add_probe_and_demo(sub) -> None:
    """Add the `probe` and `demo` commands to the parser's subcommands."""
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


def main(argv=None) -> int:
    """The console script `miniclip`; returns the exit status."""
    return cli.main(argv, extra_commands=(add_probe_and_demo,))


if __name__ == "__main__":
    sys.exit(main())
