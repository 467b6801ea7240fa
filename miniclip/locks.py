"""One writer per folder: a run or cache folder is locked while a process writes there.

    with run_lock(out):                  # RunInProgressError if another live process holds out/.miniclip.lock
        ...train...
    lock_holder(out)                     # {"pid", "host", "start"} of that process, or None
    follow_writer(out, steps=1000)       # wait, with a progress bar, while another process trains there

Two notebooks that start the same run (the main run, a probe model) would otherwise mix their checkpoints and
log rows. A lock left by a process that is gone (killed, a restarted kernel or container) is taken over.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path

from tqdm.auto import tqdm

from miniclip.checkpoint import METRICS_FILE, steps_logged

LOCK_FILE = ".miniclip.lock"  # in a run or cache folder while a process writes there: {"pid", "host", "start"}
LOCK_STALE_S = 300  # a lock of another machine, with nothing written for this long, is left by a process that is gone


class RunInProgressError(FileExistsError):
    """Another live process is writing the same run or cache folder (two notebooks started the same run)."""


@contextlib.contextmanager
def run_lock(directory, activity: str = METRICS_FILE, doing: str = "trained"):
    """Hold directory/.miniclip.lock while training (or building a cache) there. A second process that would write
    the same folder gets RunInProgressError instead of mixing its checkpoints and log rows (or chunks) with the
    first's. A lock left by a process that died (killed, a restarted kernel) on this machine is taken over, and so
    is one of another machine (a Colab runtime that disconnected, its run on Google Drive) once neither the lock nor
    the file `activity` (the run's log, a build's progress.json: written every few seconds) changed for LOCK_STALE_S."""
    path = Path(directory) / LOCK_FILE
    me = {"pid": os.getpid(), "host": socket.gethostname(), "start": process_start(os.getpid())}
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            holder = lock_holder(directory, activity)
            if holder is not None:
                raise RunInProgressError(
                    f"{directory} is being {doing} by another process (pid {holder['pid']} on {holder['host']}): wait "
                    f"for it to finish and run this again (a lesson then loads that run). If no process is writing "
                    f"there (a machine that went away), delete {path}") from None
            path.unlink(missing_ok=True)  # its holder is gone: take the run over
    with os.fdopen(fd, "w") as f:
        json.dump(me, f)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def lock_holder(directory, activity: str = METRICS_FILE) -> dict | None:
    """{"pid", "host", "start"} of the live process writing `directory` under run_lock, or None: no lock, or a stale one (its
    process on this machine is gone; another machine's, with nothing written to the lock or `activity` lately)."""
    path, activity_path = Path(directory) / LOCK_FILE, Path(directory) / activity
    try:
        written = path.stat().st_mtime
        try:
            holder = json.loads(path.read_text())
            if not isinstance(holder, dict):
                raise ValueError("not a lock")
        except ValueError:  # being written right now, or left empty by a process killed between open and write
            return {"pid": "?", "host": "?"} if time.time() - written < 10 else None
        if holder.get("host") != socket.gethostname() or os.name == "nt":  # its process cannot be asked from here:
            last = max(written, activity_path.stat().st_mtime if activity_path.exists() else 0.0)
            return holder if time.time() - last < LOCK_STALE_S else None
    except FileNotFoundError:  # released while we looked
        return None
    if holder.get("pid") == os.getpid():
        return None  # this process, which is not training there now: left by an earlier run of this process
    try:
        os.kill(int(holder["pid"]), 0)  # signal 0: only asks whether the process exists
    except (ProcessLookupError, ValueError, TypeError, KeyError, OverflowError):
        return None
    except PermissionError:  # it exists, run by another user
        pass
    now = process_start(int(holder["pid"]))
    if holder.get("start") and now and now != holder["start"]:  # the pid names another process than the lock's:
        return None  # a restarted machine or container numbers its processes again
    return holder


def process_start(pid: int) -> str | None:
    """Which process `pid` is: "<boot id>/<start, in clock ticks since boot>" from Linux's /proc (None elsewhere).
    A pid used again, after a reboot or by a later process, gives another value; no clock is involved."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        ticks = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]  # field 22: starttime
    except (OSError, IndexError):
        return None
    return f"{boot}/{ticks}"


def follow_writer(directory, steps: int, progress: bool = True, poll_s: float = 2.0) -> None:
    """Wait while another process trains in `directory` under run_lock (a notebook started while another still
    trains the same run), with a bar of the steps it logs, out of `steps`; return at once when nobody holds the
    lock. The interrupt button stops the waiting, not the other process."""
    holder = lock_holder(directory)
    if holder is None:
        return
    print(f"another process (pid {holder['pid']} on {holder['host']}) is training {directory}: following its steps "
          "until it finishes")
    with tqdm(total=steps, initial=steps_logged(directory), desc=f"{Path(directory).name}, trained elsewhere",
              disable=not progress) as bar:
        while lock_holder(directory) is not None:
            time.sleep(poll_s)
            bar.update(max(0, steps_logged(directory) - bar.n))
