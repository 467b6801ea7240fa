"""bench/gpu_check.py's step runner: a step past --deadline is stopped with every process it started."""
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import gpu_check  # noqa: E402

# A parent that starts a child in a session of its own (as jupyter_client starts a notebook's kernel), prints the
# child's pid, then waits on it.
SPAWN = """import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
print(child.pid, flush=True)
child.wait()
"""


def test_a_step_past_the_deadline_is_stopped_with_its_own_session_children(tmp_path):
    log = tmp_path / "step.log"
    start = time.perf_counter()
    row = gpu_check.run_timed([sys.executable, "-c", SPAWN], {}, log, seconds_left=2)
    assert row["status"] == "STOPPED at the deadline"
    assert time.perf_counter() - start < 30
    child = int(log.read_text().split()[0])
    time.sleep(0.2)
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE


def test_a_step_that_fails_names_its_log(tmp_path):
    row = gpu_check.run_timed([sys.executable, "-c", "raise SystemExit(3)"], {}, tmp_path / "x.log", seconds_left=60)
    assert row["status"] == "FAILED: see x.log"


def test_the_table_shows_a_missing_number_as_a_dash():
    text = gpu_check.table([dict(step="notebook 04", seconds=12.5, peak_gb=float("nan"), precision="bfloat16",
                                 status="ok"), dict(step="throughput", seconds=1.0, pairs_s=9140.4, mfu=0.027,
                                                    peak_gb=1.5, precision="bfloat16", status="ok")], "title")
    lines = text.splitlines()
    assert lines[2].split()[:3] == ["notebook", "04", "12.5"] and lines[2].split()[3:6] == ["-", "-", "-"]
    assert "9140" in lines[3] and "2.7%" in lines[3]
    assert lines[-1].split() == ["total", "13.5"]
