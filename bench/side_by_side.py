"""Two shapes-tiny runs one after the other (all threads each) against side by side (one process, one thread each).

    python bench/side_by_side.py [--steps 300] [--threads 2]

miniclip.course.side_by_side trains a notebook's independent runs side by side on a CPU (lesson 8 trains six);
this measures whether that pays on this machine: the wall time of two identical-length runs trained one after the
other with --threads threads each, then side by side with one thread each, both from fresh folders, world
generation and process start included. Prints both times and their ratio.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from miniclip.config import TrainConfig
from miniclip.course.side_by_side import load_or_train_side_by_side
from miniclip.train import load_or_train


def no_eval(model, tokenizer) -> dict:  # the runs' end-of-training evaluation is not what is timed
    return {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    jobs = lambda root: {f"seed{s}": (TrainConfig.for_preset("shapes-tiny", seed=s, steps=args.steps, eval_every=0),
                                      Path(root) / f"seed{s}") for s in (0, 1)}
    with tempfile.TemporaryDirectory() as root:
        torch.set_num_threads(args.threads)
        start = time.perf_counter()
        for cfg, out in jobs(Path(root) / "one_after_the_other").values():
            load_or_train(cfg, out, progress=False, eval_fn=no_eval)
        sequential = time.perf_counter() - start
        start = time.perf_counter()
        load_or_train_side_by_side(jobs(Path(root) / "side_by_side"), eval_fn=no_eval, workers=2, progress=False)
        parallel = time.perf_counter() - start
    print(f"two shapes-tiny runs of {args.steps} steps: one after the other ({args.threads} threads) {sequential:.1f} s, "
          f"side by side (1 thread each) {parallel:.1f} s: {sequential / parallel:.2f}x")


if __name__ == "__main__":
    main()
