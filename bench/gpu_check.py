"""The GPU check: the GPU lesson's notebooks 04-08 on stand-ins, then training throughput, in one table.

    python bench/gpu_check.py               # a GPU machine without internet; meant to finish in 8 minutes
    python bench/gpu_check.py --cpu-smoke   # the same steps on a CPU, at the rehearsal's sizes (a few minutes)

1. `miniclip standins DIR`: local stand-ins of COCO, CIFAR-10 and OpenAI's CLIP, in their real formats.
2. Notebooks 04-08 at MINICLIP_LESSON=gpu MINICLIP_STANDINS=DIR (--cpu-smoke: MINICLIP_LESSON=rehearsal), each
   executed by `jupyter nbconvert --execute` with this Python, offline, and timed; 05-08 reuse the image cache
   and the main run of 04 (one MINICLIP_RUNS folder for all five). While a notebook runs, nvidia-smi is asked
   for the GPU's used memory twice a second: its peak (all processes, CUDA contexts included).
3. bench/gpu_throughput.py's measurement (synthetic data, the real loader and train step) of coco-small and
   coco-base, with and without torch.compile; its peak is torch's largest allocation.
The table gives, per step: seconds, pairs/s, MFU, peak GPU memory (GiB) and the precision that
miniclip.device.precision chooses on the device. Everything goes under --out (default runs/gpu_check): the
stand-ins, the runs, the executed notebooks, one log per step and table.txt.
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

import gpu_throughput  # bench/ is on sys.path: this script's own folder
from miniclip.course.lesson import REHEARSAL_STANDIN_IMAGES
from miniclip.device import precision

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ["04_training_on_coco", "05_zero_shot_prompt_classifiers", "06_retrieval_and_embedding_space",
             "07_failure_modes", "08_failure_modes_continued"]
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MPLBACKEND": "Agg"}


def gpu_memory_gib() -> float:
    """Memory in use on GPU 0 (GiB, every process), from nvidia-smi; NaN without it."""
    if shutil.which("nvidia-smi") is None:
        return float("nan")
    out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                         capture_output=True, text=True)
    return float(out.stdout.strip()) / 1024 if out.returncode == 0 else float("nan")


def run_timed(cmd: list[str], env: dict, log: Path) -> dict:
    """Run `cmd`, its output into `log`: seconds, peak GPU memory (GiB, sampled) and whether it succeeded."""
    start, peak = time.perf_counter(), float("nan")
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        while proc.poll() is None:
            used = gpu_memory_gib()
            peak = used if math.isnan(peak) else max(peak, used)
            time.sleep(0.5)
    ok = proc.returncode == 0
    return dict(seconds=time.perf_counter() - start, peak_gb=peak, status="ok" if ok else f"FAILED: see {log}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="the same steps on a CPU at the rehearsal's sizes")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "gpu_check")
    parser.add_argument("--throughput-images", type=int, default=20_000,
                        help="synthetic images of the throughput runs (gpu_throughput.py's default: 118,287)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile throughput runs")
    args = parser.parse_args()
    smoke = args.cpu_smoke
    if not smoke and not torch.cuda.is_available():
        raise SystemExit("gpu_check.py: no CUDA GPU here; on a CPU run `python bench/gpu_check.py --cpu-smoke`")
    out = args.out.resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    rows = []

    # 1. The stand-ins (reused when a finished folder with the same arguments is there).
    standins = out / "standins"
    images = ["--images", str(REHEARSAL_STANDIN_IMAGES)] if smoke else []
    cmd = [sys.executable, "-m", "miniclip", "standins", str(standins), *images]
    rows.append(dict(step="miniclip standins", **run_timed(cmd, {**os.environ, **OFFLINE}, out / "logs" / "standins.log")))

    # 2. The notebooks, in order, sharing one runs folder. PATH starts with this Python's folder, so that the
    # kernel's "python" (the python3 kernelspec) is this environment's.
    env = {**os.environ, **OFFLINE, "MINICLIP_LESSON": "rehearsal" if smoke else "gpu",
           "MINICLIP_STANDINS": str(standins), "MINICLIP_RUNS": str(out / "runs"),
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    env.pop("MINICLIP_SMOKE", None)
    for name in NOTEBOOKS:
        cmd = [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
               str(ROOT / "notebooks" / f"{name}.ipynb"), "--output-dir", str(out / "notebooks"),
               "--ExecutePreprocessor.timeout=-1", "--ExecutePreprocessor.kernel_name=python3"]
        rows.append(dict(step=f"notebook {name[:2]}", **run_timed(cmd, env, out / "logs" / f"{name[:2]}.log")))

    # 3. Throughput, in this process: the same precision() as the notebooks' training.
    device = torch.device("cpu" if smoke else "cuda")
    dtype = str(precision(device)[1]).removeprefix("torch.")
    for row in rows:
        row["precision"] = dtype
    bench = argparse.Namespace(device=device.type, images=512 if smoke else args.throughput_images, batch_size=None,
                               steps=2 if smoke else 30, warmup=1 if smoke else 10, peak_tflops=989.0)
    torch.backends.cuda.matmul.allow_tf32 = True
    for preset in ["coco-small"] if smoke else ["coco-small", "coco-base"]:
        for compile in [False] if smoke or args.no_compile else [False, True]:
            step = f"throughput {preset}" + (" compiled" if compile else "")
            start = time.perf_counter()
            try:
                r = gpu_throughput.measure(preset, compile, bench)
                rows.append(dict(step=step, seconds=time.perf_counter() - start, pairs_s=r["pairs_s"], mfu=r["mfu"],
                                 peak_gb=r["peak_gb"], precision=r["precision"], status="ok"))
            except Exception as e:  # noqa: BLE001  one failed measurement must not hide the others
                rows.append(dict(step=step, seconds=time.perf_counter() - start, precision=dtype,
                                 status=f"FAILED: {type(e).__name__}: {e}"[:120]))

    def cell(row, key, fmt, width):
        value = row.get(key)
        return format(value, f">{width}{fmt}") if value is not None and not math.isnan(value) else "-".rjust(width)

    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "CPU"
    lines = [f"gpu_check on {name} ({'--cpu-smoke, rehearsal sizes' if smoke else 'GPU lesson on stand-ins'})",
             f"{'step':<30} {'seconds':>8} {'pairs/s':>9} {'MFU':>6} {'peak GiB':>9} {'precision':<10} status"]
    lines += [f"{r['step']:<30} {cell(r, 'seconds', '.1f', 8)} {cell(r, 'pairs_s', '.0f', 9)} {cell(r, 'mfu', '.1%', 6)} "
              f"{cell(r, 'peak_gb', '.2f', 9)} {r['precision']:<10} {r['status']}" for r in rows]
    lines.append(f"{'total':<30} {sum(r['seconds'] for r in rows):8.1f}")
    (out / "table.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
