"""Seconds each notebook takes at a lesson (default: laptop), first run from an empty runs folder, then again.

    python bench/notebooks.py                       # all of them, laptop lesson, runs in a temporary folder
    python bench/notebooks.py --only 01 02 --again  # some of them, and a second run that reuses what the first left

Each notebook is executed with `jupyter nbconvert --execute` in the order of the course (lesson 4 trains the main
run that 5-8 load, so a notebook's first-run time includes what it trains itself, not what earlier ones trained).
Prints one table; paste it into the README and the notebooks' headers.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(notebook: Path, env: dict, out_dir: Path) -> float | None:
    """Execute one notebook; returns its wall-clock seconds (kernel start included), or None if it failed."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
                           "--ExecutePreprocessor.timeout=-1", "--output-dir", str(out_dir), str(notebook)],
                          env=env, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"{notebook.name} FAILED:", *done.stderr.splitlines()[-15:], sep="\n", flush=True)
        return None
    return time.perf_counter() - start


def seconds(value: float | None) -> str:
    return "failed" if value is None else f"{value:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lesson", default="laptop")
    parser.add_argument("--only", nargs="+", help="notebook numbers, e.g. 01 04")
    parser.add_argument("--again", action="store_true", help="run each notebook a second time, reusing the runs")
    args = parser.parse_args()
    notebooks = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
    if args.only:
        notebooks = [nb for nb in notebooks if nb.name[:2] in args.only]
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, MINICLIP_LESSON=args.lesson, MINICLIP_RUNS=str(Path(tmp) / "runs"),
                   HF_HUB_OFFLINE="1", MPLBACKEND="Agg")
        env.pop("MINICLIP_SMOKE", None)
        rows = []
        for nb in notebooks:
            first = run(nb, env, Path(tmp) / "out")
            print(f"{nb.stem}: first run {seconds(first)} s", flush=True)
            again = run(nb, env, Path(tmp) / "out") if args.again else None
            if args.again:
                print(f"{nb.stem}: again {seconds(again)} s", flush=True)
            rows.append((nb.stem, first, again))
    print(f"\n| notebook ({args.lesson} lesson, {os.cpu_count()} cores) | first run, s | again, s |\n| --- | --- | --- |")
    for name, first, again in rows:
        print(f"| {name} | {seconds(first)} | {seconds(again) if args.again else ''} |")
    total = sum(r[1] or 0 for r in rows)
    again = f"{sum(r[2] or 0 for r in rows):.0f}" if args.again else ""
    print(f"| all (failed ones not counted) | {total:.0f} | {again} |")


if __name__ == "__main__":
    main()
