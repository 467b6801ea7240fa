"""Peak memory of preparing and training on a large shapes world, each in a fresh process.

    python bench/memory.py [--n 200000] [--steps 20] [--dir DIR]

(0) the floor: Python with miniclip.train (and so torch) imported, nothing else
(a) `miniclip prepare shapes --n N`: generated and written one chunk (5,000 images) at a time
(a') the same files the old way: save_paired(shapes.generate(N)), the whole world in memory first
(b) training shapes-tiny for --steps steps from that single-folder cache (images memory-mapped)
(c) training shapes-tiny for --steps steps on N images generated in memory (data="shapes")

peak RSS is the child's VmHWM (/proc/self/status) once its work is done: every resident page, the memmap's
included. peak anon is the most anonymous memory (what the process allocated itself: arrays, dicts, copies),
sampled every 10 ms. The difference is file pages: the libraries (about 250 MB) and, in (b), the pages of the
memmap that were read (the kernel maps about 64 KB around each page read): page cache it can drop, not a copy.
The peer is the images' own size, N x 32 x 32 x 3 bytes (614 MB for 200,000). Unlike time, memory does not
depend on how busy the machine is, so one run is enough. The caches go to a temporary folder unless --dir.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Every child runs FLOOR first: a thread that samples the anonymous memory every 10 ms, then the imports
# (torch alone is about 0.5 GB). REPORT prints the peaks and leaves.
FLOOR = """
import threading, time
def _status(key):
    return int(open("/proc/self/status").read().split(key + ":")[1].split()[0])  # kB
_anon = [0]
def _sample():
    while True:
        _anon[0] = max(_anon[0], _status("RssAnon"))
        time.sleep(0.01)
threading.Thread(target=_sample, daemon=True).start()
import miniclip.train
"""
REPORT = """
import os
_anon[0] = max(_anon[0], _status("RssAnon"))
print("PEAK", _status("VmHWM"), _anon[0], flush=True)
os._exit(0)  # skip the interpreter's teardown (it touches another ~130 MB of torch's memory, not the work's)
"""
PREPARE = """
from miniclip.cli import main
assert main(["prepare", "shapes", "--n", "{n}", "--out", "{out}"]) == 0
"""
PREPARE_IN_MEMORY = """
from miniclip.data import shapes
from miniclip.data.cache import save_paired
data = shapes.generate({n}, 0)
save_paired(data, "{out}", source={{"name": "shapes", **data.meta}})
"""
TRAIN = """
import torch
from miniclip.train import train
torch.set_num_threads(1)  # memory does not depend on it; a shared machine stays usable
train(preset="shapes-tiny", data="{data}", num_images={num_images}, steps={steps}, eval_every=0,
      checkpoint_every=0, progress=False)
"""


def peak_memory_mb(code: str) -> tuple[float, float, float]:
    """(peak RSS, peak anonymous RSS, wall seconds) of `python -c code` in a fresh process, memory in MB (10^6
    bytes); a failure stops the benchmark."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    t0 = time.perf_counter()
    child = subprocess.run([sys.executable, "-c", FLOOR + code + REPORT], env=env, stdout=subprocess.PIPE, text=True)
    peaks = [line.split()[1:] for line in child.stdout.splitlines() if line.startswith("PEAK ")]
    if child.returncode != 0 or not peaks:
        raise SystemExit(f"bench/memory.py: this child failed with status {child.returncode}:\n{code}")
    rss, anon = (int(kb) * 1024 / 1e6 for kb in peaks[0])
    return rss, anon, time.perf_counter() - t0


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="images in the shapes world (default 200000)")
    parser.add_argument("--steps", type=int, default=20, help="training steps (default 20)")
    parser.add_argument("--dir", help="where to write the caches (default: a temporary folder, deleted after)")
    args = parser.parse_args(argv)
    if not Path("/proc/self/status").exists():
        raise SystemExit("bench/memory.py reads /proc/self/status: run it on Linux")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(args.dir or tmp)
        stream, whole = base / f"shapes{args.n}", base / f"shapes{args.n}_in_memory"
        for folder in (stream, whole):
            if folder.exists():
                raise SystemExit(f"bench/memory.py: {folder} exists; delete it or choose another --dir")
        runs = [
            ("(0) python + torch + miniclip imported", ""),
            (f"(a) miniclip prepare shapes --n {args.n} (streamed)", PREPARE.format(n=args.n, out=stream)),
            ("(a') save_paired(shapes.generate(n)), all in memory", PREPARE_IN_MEMORY.format(n=args.n, out=whole)),
            (f"(b) train {args.steps} steps from the cache (memmap)",
             TRAIN.format(data=stream, num_images=0, steps=args.steps)),
            (f"(c) train {args.steps} steps, {args.n} images generated in memory",
             TRAIN.format(data="shapes", num_images=args.n, steps=args.steps)),
        ]
        print(f"MB = 10^6 bytes; the images themselves: {args.n} x 32 x 32 x 3 bytes = {args.n * 3072 / 1e6:.0f} MB")
        print(f"{'what':<56} {'peak RSS':>9} {'- floor':>8} {'peak anon':>10} {'- floor':>8} {'seconds':>8}")
        floor = None
        for name, code in runs:
            rss, anon, seconds = peak_memory_mb(code)
            floor = floor or (rss, anon)
            print(f"{name:<56} {rss:>9.0f} {rss - floor[0]:>8.0f} {anon:>10.0f} {anon - floor[1]:>8.0f} "
                  f"{seconds:>8.0f}", flush=True)


if __name__ == "__main__":
    main()
