"""The GPU check: the GPU lesson's notebooks on stand-ins, training throughput and the T4's fp16 path, in one table.

    python bench/gpu_check.py                  # a GPU machine without internet (H200: 12 minutes and more; below)
    python bench/gpu_check.py --cpu-smoke      # the same steps on a CPU, at the rehearsal's sizes (a few minutes)
    python bench/gpu_check.py --deadline 480   # stop what runs at 480 s; run it again to do what is left
    python bench/gpu_check.py --only "miniclip standins" "notebook 04" "notebook 08"   # these steps only

Steps, in this order (the most wanted first, since a lent GPU's minutes are few):
1. `miniclip standins DIR`: local stand-ins of COCO, CIFAR-10 and OpenAI's CLIP, in their real formats.
2. Notebooks 04-07 at MINICLIP_LESSON=gpu MINICLIP_STANDINS=DIR (--cpu-smoke: MINICLIP_LESSON=rehearsal), each
   executed by nbclient with this Python, offline, and timed; 05-07 reuse the image cache and the main run of 04
   (one MINICLIP_RUNS folder for all). While a step runs, nvidia-smi is asked for the GPU's used memory twice a
   second: its peak (all processes, CUDA contexts included).
3. bench/gpu_throughput.py's measurement (synthetic data, the real loader and train step) of coco-small and
   coco-base; its peak is torch's largest allocation.
4. The T4's path on this GPU: 300 steps of coco-small on notebook 04's cache with the compute capability reported
   as 7.5, so that miniclip.device.precision picks fp16 with a GradScaler; its row fails if the loss is not finite
   or does not fall.
5. The throughput of step 3 under torch.compile.
6. Notebook 08 (the probes' second half), last because it is the longest.
Each step runs in a process of its own, stopped when --deadline passes. The table gives, per step: seconds,
pairs/s, MFU, peak GPU memory (GiB), the precision and the status.
On an H200 (bench/gpu_check_h200.txt) steps 1-5 took 575 s, lesson 4's 5,000 training steps 165 s of them, and
notebook 08 had not finished after 124 s more; --deadline and --only fit a run to the minutes lent. Everything goes
under --out (default runs/gpu_check): the stand-ins, the runs, the executed notebooks, one log per
step, rows.jsonl and table.txt (rewritten after every step). A step whose row says ok, in the same mode (GPU or
--cpu-smoke, the same --throughput-images), is not run again, so a second run with the same --out does what the
first left undone; a fresh --out runs everything. Notebooks 05-08 and the T4 step need notebook 04's cache and main
run, and every notebook the stand-ins: --only a later step on a fresh --out fails without them.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil  # comes with ipykernel, which executing the notebooks needs anyway
import torch

from miniclip.checkpoint import read_jsonl
from miniclip.course.lesson import REHEARSAL_STANDIN_IMAGES, pick_lesson
from miniclip.course.main_run import coco_cache_dir
from miniclip.device import precision

ROOT = Path(__file__).resolve().parent.parent
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MPLBACKEND": "Agg"}
NOTEBOOK = {"04": "04_training_on_coco", "05": "05_zero_shot_prompt_classifiers",
            "06": "06_retrieval_and_embedding_space", "07": "07_failure_modes", "08": "08_failure_modes_continued"}
# nbclient, not `jupyter nbconvert` (which a bare GPU image may lack): the executed notebook is written even when
# a cell fails, so the log and the notebook both show where.
EXECUTE = """import sys, nbformat, nbclient
nb = nbformat.read(sys.argv[1], as_version=4)
try:
    nbclient.NotebookClient(nb, timeout=None, kernel_name="python3", resources={"metadata": {"path": sys.argv[3]}}).execute()
finally:
    nbformat.write(nb, sys.argv[2])
"""
# The T4's precision on this GPU: capability 7.5 makes precision() choose fp16, and train() its GradScaler.
T4_PATH = """import json, math, sys, torch
torch.cuda.get_device_capability = lambda *args, **kwargs: (7, 5)
from miniclip.device import precision
from miniclip.train import train
assert precision(torch.device("cuda"))[1] == torch.float16, "capability 7.5 should give fp16"
result = train(preset="coco-small", data=sys.argv[1], steps=300, warmup_steps=50, eval_every=100, eval_images=200,
               checkpoint_every=0, out=sys.argv[2], overwrite=True, progress=False)
losses = [row["loss"] for row in result.history if "loss" in row]
speeds = [row["pairs_per_s"] for row in result.history if "pairs_per_s" in row][1:]  # the first includes start-up
ok = all(map(math.isfinite, losses)) and losses[-1] < losses[0]
print(json.dumps(dict(pairs_s=sum(speeds) / max(len(speeds), 1), precision="float16",
                      status=f"{'ok' if ok else 'FAILED'}: loss {losses[0]:.2f} -> {losses[-1]:.2f}")))
sys.exit(0 if ok else 1)
"""
# One throughput measurement (bench/gpu_throughput.py), its result as the last line.
THROUGHPUT = """import argparse, json, sys, torch
sys.path.insert(0, "bench")
import gpu_throughput
preset, compile, device, images, steps, warmup = sys.argv[1:]
torch.backends.cuda.matmul.allow_tf32 = True
args = argparse.Namespace(device=device, images=int(images), batch_size=None, steps=int(steps), warmup=int(warmup),
                          peak_tflops=989.0)
r = gpu_throughput.measure(preset, compile == "True", args)
print(json.dumps({key: r[key] for key in ("pairs_s", "mfu", "peak_gb", "precision")}))
"""


def gpu_memory_gib() -> float:
    """Memory in use on GPU 0 (GiB, every process), from nvidia-smi; NaN without it."""
    if shutil.which("nvidia-smi") is None:
        return float("nan")
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                             capture_output=True, text=True, timeout=5)  # a hung nvidia-smi must not stop the clock
        return float(out.stdout.strip()) / 1024 if out.returncode == 0 else float("nan")
    except (subprocess.TimeoutExpired, ValueError):
        return float("nan")


def kill_tree(pid: int) -> None:
    """Kill process `pid` and everything it started. A notebook's kernel runs in a session of its own (jupyter_client
    starts it so), so killing the process group would miss it; a process that exits meanwhile is skipped."""
    try:
        parent = psutil.Process(pid)
        family = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for process in family:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(family[1:], timeout=10)  # not the parent: its caller waits for it (and reads its status)


def run_timed(cmd: list[str], env: dict, log: Path, seconds_left: float) -> dict:
    """Run `cmd`, its output into `log`, for at most `seconds_left`: seconds, peak GPU memory (GiB, sampled), status."""
    start, peak, stopped = time.perf_counter(), float("nan"), False
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        while proc.poll() is None:
            used = gpu_memory_gib()
            peak = used if math.isnan(peak) else max(peak, used)
            if time.perf_counter() - start > seconds_left:
                kill_tree(proc.pid)
                proc.wait()
                stopped = True
            time.sleep(0.5)
    status = "ok" if proc.returncode == 0 else "STOPPED at the deadline" if stopped else f"FAILED: see {log.name}"
    return dict(seconds=time.perf_counter() - start, peak_gb=peak, status=status)


def table(rows: list[dict], title: str) -> str:
    """The rows as a fixed-width table."""
    def cell(row, key, fmt, width):
        value = row.get(key)
        return format(value, f">{width}{fmt}") if value is not None and not math.isnan(value) else "-".rjust(width)

    lines = [title, f"{'step':<34} {'seconds':>8} {'pairs/s':>9} {'MFU':>6} {'peak GiB':>9} {'precision':<9} status"]
    lines += [f"{r['step']:<34} {cell(r, 'seconds', '.1f', 8)} {cell(r, 'pairs_s', '.0f', 9)} {cell(r, 'mfu', '.1%', 6)} "
              f"{cell(r, 'peak_gb', '.2f', 9)} {r.get('precision', ''):<9} {r['status']}" for r in rows]
    lines.append(f"{'total':<34} {sum(r['seconds'] for r in rows):8.1f}")
    return "\n".join(lines) + "\n"


def step_names(smoke: bool, no_compile: bool) -> list[str]:
    """The steps of a run, in order (the table's first column)."""
    presets = ["coco-small"] if smoke else ["coco-small", "coco-base"]
    return (["miniclip standins"] + [f"notebook {n}" for n in ("04", "05", "06", "07")]
            + [f"throughput {p}" for p in presets] + ([] if smoke else ["train 300 steps as a T4"])
            + ([] if smoke or no_compile else [f"throughput {p} compiled" for p in presets]) + ["notebook 08"])


def earlier_result(rows: list[dict], step: str, mode: str) -> dict | None:
    """The last row of `step` that passed in `mode` among an earlier run's rows, or None: run it (again)."""
    passed = [r for r in rows if r.get("step") == step and r.get("mode") == mode and r["status"].startswith("ok")]
    return passed[-1] if passed else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="the same steps on a CPU at the rehearsal's sizes")
    parser.add_argument("--out", type=Path, help="default: runs/gpu_check (--cpu-smoke: runs/gpu_check_cpu_smoke)")
    parser.add_argument("--deadline", type=float, default=math.inf,
                        help="seconds for all steps (default: no limit); what runs then is stopped, the rest skipped")
    parser.add_argument("--throughput-images", type=int, default=8192,
                        help="synthetic images of the throughput runs (gpu_throughput.py's default: 118,287)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile throughput runs")
    parser.add_argument("--only", nargs="+", metavar="PREFIX",
                        help="run only the steps whose names start with one of these (see the table's first column)")
    args = parser.parse_args()
    smoke, start = args.cpu_smoke, time.perf_counter()
    if not smoke and not torch.cuda.is_available():
        raise SystemExit("gpu_check.py: no CUDA GPU here; on a CPU run `python bench/gpu_check.py --cpu-smoke`")
    names = step_names(smoke, args.no_compile)
    if unknown := [p for p in args.only or [] if not any(n.startswith(p) for n in names)]:
        raise SystemExit(f"gpu_check.py: --only {' '.join(map(repr, unknown))} names no step; the steps: {names}")
    out = (args.out or ROOT / "runs" / ("gpu_check_cpu_smoke" if smoke else "gpu_check")).resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    device = torch.device("cpu" if smoke else "cuda")
    dtype = str(precision(device)[1]).removeprefix("torch.")
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "CPU"
    title = (f"gpu_check on {name} ({'--cpu-smoke, rehearsal sizes' if smoke else 'GPU lesson on stand-ins'}); "
             f"torch {torch.__version__}")
    mode = f"{'cpu-smoke' if smoke else 'gpu'}, throughput images {args.throughput_images}"
    done = read_jsonl(out / "rows.jsonl")  # earlier runs of this script on the same --out (a torn last line: dropped)
    rows = []

    def record(row):
        rows.append({"precision": dtype, "mode": mode, **row})
        with open(out / "rows.jsonl", "a") as f:
            f.write(json.dumps(rows[-1]) + "\n")
        (out / "table.txt").write_text(table(rows, title))
        print(table(rows, title).splitlines()[-2], flush=True)

    def left():
        return args.deadline - (time.perf_counter() - start)

    standins = out / "standins"
    env = {**os.environ, **OFFLINE, "MINICLIP_LESSON": "rehearsal" if smoke else "gpu",
           "MINICLIP_STANDINS": str(standins), "MINICLIP_RUNS": str(out / "runs"),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           # the kernel's "python" (the python3 kernelspec) is this environment's
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    env.pop("MINICLIP_SMOKE", None)

    # Each step's command; step_names decides which run, and in which order.
    images = ["--images", str(REHEARSAL_STANDIN_IMAGES)] if smoke else []
    commands = {"miniclip standins": [sys.executable, "-m", "miniclip", "standins", str(standins), *images]}
    (out / "notebooks").mkdir(exist_ok=True)
    for number, notebook in NOTEBOOK.items():
        path = ROOT / "notebooks" / f"{notebook}.ipynb"
        commands[f"notebook {number}"] = [sys.executable, "-c", EXECUTE, str(path), str(out / "notebooks" / path.name),
                                          str(path.parent)]
    # throughput: gpu_throughput.measure in a process of its own, so that --deadline can stop a slow compile
    sizes = ["512", "2", "1"] if smoke else [str(args.throughput_images), "30", "10"]  # images, steps, warmup
    for preset in ("coco-small", "coco-base"):
        for compile in (False, True):
            commands[f"throughput {preset}" + (" compiled" if compile else "")] = [
                sys.executable, "-c", THROUGHPUT, preset, str(compile), device.type, *sizes]
    os.environ.update(MINICLIP_RUNS=env["MINICLIP_RUNS"], MINICLIP_STANDINS=env["MINICLIP_STANDINS"])
    cache = coco_cache_dir(pick_lesson("gpu"), "train")  # the one notebook 04 builds
    commands["train 300 steps as a T4"] = [sys.executable, "-c", T4_PATH, str(cache), str(out / "t4-path")]

    for name in names:
        if args.only and not name.startswith(tuple(args.only)):
            continue
        if earlier := earlier_result(done, name, mode):
            rows.append({**earlier, "status": "ok (an earlier run)"})
        elif left() < 5:
            record(dict(step=name, seconds=0.0, status="not run: no time left before --deadline"))
        else:
            log = out / "logs" / f"{name.replace(' ', '_')}.log"
            row = dict(step=name, **run_timed(commands[name], env, log, left()))
            lines = log.read_text().strip().splitlines()
            if lines and lines[-1].startswith("{"):  # THROUGHPUT's or T4_PATH's result
                row.update(json.loads(lines[-1]))
            record(row)
    print(f"\n{table(rows, title)}")
    return 0 if all(r["status"].startswith("ok") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
