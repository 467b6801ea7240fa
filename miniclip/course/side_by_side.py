"""Train several independent runs at once on a CPU: one process per run, one thread each, two or more at a time.

    results = load_or_train_side_by_side({"words": (cfg_a, runs / "words"), "bias": (cfg_b, runs / "bias")})
    results["words"].model      # a TrainResult per name, as load_or_train returns it
    call_side_by_side({"w32": (train_objective, args_a), "w128": (train_objective, args_b)})   # any calls

A tiny model does not keep two CPU threads busy: on the 2-core reference machine one shapes-tiny run trains about
2,500 pairs/s on two threads, while two runs side by side, one thread each, train about 1,900 pairs/s each, 3,800
together: 1.5x the work per second (bench/side_by_side.py measures it on yours). A notebook that needs several
models (lesson 8 trains six, lesson 9 five) finishes sooner when they train side by side. Runs that are already
finished are only loaded; each run is the same as load_or_train would make it (its own folder, seed, checkpoints,
resume), but its numbers are those of a one-thread run, which can differ from a two-thread run's in the last
digits. What a worker prints, logs or warns is printed here, each line under its run's name, without the redraws
of its progress bars (the parent draws one bar for all). On a GPU the runs train one after the other in this process.
"""
from __future__ import annotations

import io
import multiprocessing
import os
import queue
import sys
import time
import traceback
import warnings
from pathlib import Path

import torch
from tqdm.auto import tqdm

from miniclip.checkpoint import steps_logged
from miniclip.config import TrainConfig
from miniclip.device import pick_device
from miniclip.run_folder import run_is_finished
from miniclip.train import TrainResult, load_or_train


class _Lines(io.TextIOBase):
    """A worker's sys.stdout or sys.stderr: each complete line goes to the parent (`messages`), which prints it in
    the notebook under the worker's name (written directly, the lines of several workers would interleave
    unlabelled). Of a line, only what follows its last carriage return is kept, as a terminal shows it: a progress
    bar redraws itself with "\r", so one that clears itself when done (leave=False, as the shapes world's does)
    sends nothing, instead of a line of percentages per redraw."""

    def __init__(self, name: str, messages):
        self.name, self.messages, self.pending = name, messages, ""

    def write(self, text: str) -> int:
        """Send the complete lines of text (the rest waits for its end of line); returns len(text)."""
        *lines, self.pending = (self.pending + text).split("\n")
        for line in filter(str.strip, (line.rsplit("\r", 1)[-1] for line in lines)):
            self.messages.put((self.name, line))
        return len(text)

    def flush(self) -> None:
        """Nothing to do: lines go as they end."""


def _call(name: str, function, args: tuple, errors, messages) -> None:
    """One worker: one call on one thread (the point of running side by side); what it prints and warns goes to
    `messages`, a failure to `errors`."""
    torch.set_num_threads(1)
    # The kernel shows a child process's own output in the notebook, but unlabelled, and every redraw of a progress
    # bar as a line of its own: what the worker prints, logs or draws goes through the parent instead.
    sys.stdout, sys.stderr = _Lines(name, messages), _Lines(name, messages)
    warnings.showwarning = lambda message, category, *_: messages.put((name, f"{category.__name__}: {message}"))
    try:
        function(*args)
    except BaseException:
        errors.put((name, traceback.format_exc()))
        raise SystemExit(1)


def _load_or_train(cfg: TrainConfig, out: Path, eval_fn) -> None:
    load_or_train(cfg, out, progress=False, eval_fn=eval_fn)


def load_or_train_side_by_side(jobs: dict[str, tuple[TrainConfig, Path]], eval_fn=None, workers: int | None = None,
                               progress: bool = True, desc: str = "training side by side") -> dict[str, TrainResult]:
    """{name: (cfg, run folder)} -> {name: TrainResult}: every run loaded if finished, the others trained first.

    workers: processes at once (default: the CPU's cores, at most the number of runs to train); the longest runs
    start first. A fine-tune of another job (its cfg.init_from is that job's folder) starts when that job has
    finished, and is trained again when that job's weights changed. eval_fn: as load_or_train's, and it must be picklable (a
    module-level function or a functools.partial of one, not a lambda or a function defined in a notebook).
    progress: one bar for the steps of all the runs together. A run that fails, or an interrupt (Ctrl-C, the
    notebook's stop button), stops every worker; the error names the run, and what was checkpointed resumes.
    """
    jobs = {name: (cfg, Path(out)) for name, (cfg, out) in jobs.items()}
    folders = {out.resolve(): name for name, (_, out) in jobs.items()}
    after = {name: {folders[Path(cfg.init_from).resolve()]} for name, (cfg, _) in jobs.items()
             if cfg.init_from and Path(cfg.init_from).resolve() in folders}  # {fine-tune: {the job it starts from}}
    order = sorted(jobs, key=lambda name: name in after)  # a job's start before it (one level of fine-tunes)
    todo = set()
    for name in order:
        if not run_is_finished(*jobs[name]) or after.get(name, set()) & todo:
            todo.add(name)
    steps = {name: jobs[name][0].steps for name in todo}
    chain = {name: steps[name] + sum(steps[n] for n in todo if name in after.get(n, ())) for name in todo}
    todo = sorted(todo, key=lambda name: -chain[name])  # the longest chains first: the slots fill evenly
    on_gpu = any(pick_device(jobs[name][0].device).type != "cpu" for name in todo)  # where train() would run
    if len(todo) > 1 and not on_gpu:
        calls = {name: (_load_or_train, (*jobs[name], eval_fn)) for name in todo}

        start = time.time()

        def done() -> int:  # steps logged so far, over all the runs
            return sum(min(steps_logged(jobs[name][1], since=start), steps[name]) for name in todo)

        call_side_by_side(calls, workers, progress, desc, total=sum(steps.values()), done=done, after=after)
    return {name: load_or_train(*jobs[name], progress=progress, eval_fn=eval_fn) for name in order}


def _print_messages(messages, bar) -> None:
    """Print what the workers printed or warned so far, each line under the name of its call, above the bar."""
    while True:
        try:
            name, line = messages.get_nowait()
        except queue.Empty:
            return
        bar.write(f"[{name}] {line}")


def call_side_by_side(calls: dict[str, tuple], workers: int | None = None, progress: bool = True,
                      desc: str = "side by side", total: int | None = None, done=None, after=None) -> None:
    """{name: (function, args)}: every function(*args) in its own process on one thread, `workers` at a time.

    The calls start in the order given, except that a call named in `after` ({name: names of calls that must
    finish first}) waits for those (names that are not calls here count as finished); each function and its
    arguments must be picklable (module-level functions).
    Results are not returned: the calls write what they make (run folders), and the caller loads it. workers:
    default the CPU's cores. progress: one bar, counting finished calls, or `done()` out of `total` when given
    (e.g. training steps). Any failure, or an interrupt, stops every worker; the error names the call.
    """
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: safe from a notebook, on every OS
    workers = max(1, min(workers or os.cpu_count() or 1, len(calls)))
    errors, messages = context.Queue(), context.Queue()  # the workers' tracebacks; what they print or warn
    waiting, running, finished, after = list(calls), {}, 0, after or {}
    bar = tqdm(total=total or len(calls), disable=not progress, desc=f"{desc} ({len(calls)} runs, {workers} at a time)")
    saved_backend = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = "Agg"  # the workers inherit it: a notebook's inline backend needs a notebook
    try:
        while waiting or running:
            while len(running) < workers:
                ready = [name for name in waiting if not set(after.get(name, ())) & {*waiting, *running}]
                if not ready and not running:
                    raise ValueError(f"the calls {waiting} wait for each other (after={after}): none can start")
                if not ready:
                    break
                name = ready[0]
                waiting.remove(name)
                running[name] = context.Process(target=_call, args=(name, *calls[name], errors, messages),
                                                daemon=True)
                running[name].start()
            for name, process in list(running.items()):
                process.join(timeout=0.5 / len(running))
                if process.exitcode is not None:
                    del running[name]
                    finished += 1
                    if process.exitcode != 0:
                        _print_messages(messages, bar)  # what it said before it failed
                        try:
                            where, why = errors.get(timeout=5)  # the worker's traceback
                        except queue.Empty:  # killed without one (out of memory, a signal)
                            where, why = name, f"its process ended with exit code {process.exitcode}"
                        raise RuntimeError(f"the run {where!r} failed: {why.strip().splitlines()[-1]}\n\n"
                                           f"The worker's traceback:\n{why}")
            _print_messages(messages, bar)
            bar.n = done() if done is not None else finished
            bar.refresh()
        _print_messages(messages, bar)
        bar.n = bar.total  # all done, even where a call had less to do than counted (a run that only reloaded)
        bar.refresh()
    finally:
        for process in running.values():  # after a failure or an interrupt: stop the others too
            if process.pid is not None:  # started (start() itself can fail)
                process.terminate()
                process.join()
        bar.close()
        if saved_backend is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = saved_backend
