"""bench/gpu_check.py's step runner: a step past --deadline is stopped with every process it started."""
import subprocess
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


def test_an_earlier_result_is_reused_only_when_it_passed_in_the_same_mode():
    rows = [dict(step="notebook 04", mode="cpu-smoke, throughput images 8192", status="ok", seconds=30.0),
            dict(step="notebook 05", mode="gpu, throughput images 8192", status="FAILED: see notebook_05.log"),
            dict(step="notebook 06", mode="gpu, throughput images 8192", status="ok: loss 4.38 -> 1.58", seconds=9.0)]
    gpu = "gpu, throughput images 8192"
    assert gpu_check.earlier_result(rows, "notebook 04", gpu) is None  # a CPU rehearsal's row is no GPU result
    assert gpu_check.earlier_result(rows, "notebook 05", gpu) is None  # failed: run it again
    assert gpu_check.earlier_result(rows, "notebook 06", gpu)["seconds"] == 9.0
    assert gpu_check.earlier_result(rows, "notebook 06", "gpu, throughput images 512") is None


def test_the_steps_of_a_run_in_order():
    gpu = gpu_check.step_names(smoke=False, no_compile=False)
    assert gpu[0] == "miniclip standins" and gpu[-1] == "notebook 08" and gpu.index("notebook 04") == 1
    assert gpu.index("train 300 steps as a T4") < gpu.index("throughput coco-small compiled")
    smoke = gpu_check.step_names(smoke=True, no_compile=False)
    assert "train 300 steps as a T4" not in smoke and not any("compiled" in n for n in smoke)


def test_killing_a_process_that_is_gone_is_no_error():
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    gpu_check.kill_tree(gone.pid)  # raised psutil.NoSuchProcess before
