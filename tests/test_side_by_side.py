"""course.side_by_side: runs trained in worker processes equal the same runs trained here on one thread."""
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

from miniclip.config import TrainConfig
from miniclip.course.side_by_side import call_side_by_side, load_or_train_side_by_side
from miniclip.checkpoint import MODEL_FILE
from miniclip.train import load_or_train

TINY = dict(steps=3, batch_size=16, num_images=200, eval_every=0, checkpoint_every=0)


def _no_eval(model, tokenizer):  # module-level: the workers must be able to unpickle it
    return {}


def _write_when(path, needs=None, wait_s=0.0):  # module-level: picklable
    time.sleep(wait_s)
    if needs is not None and not Path(needs).is_file():
        raise RuntimeError(f"{needs} is not there yet")
    Path(path).write_text("done")


def _talk(text):  # module-level: picklable
    print(text, "in two", end=" ")
    print("parts")
    warnings.warn(f"{text} warns")


def test_what_a_worker_prints_or_warns_reaches_the_notebook(capsys):
    call_side_by_side({"a": (_talk, ("hello",)), "b": (_talk, ("bye",))}, workers=2, progress=False)
    out = capsys.readouterr().out
    assert "[a] hello in two parts" in out and "[b] UserWarning: bye warns" in out


def _draw_bar_and_log(n):  # module-level: picklable
    import logging

    from tqdm.auto import tqdm

    for _ in tqdm(range(n), desc="worker bar", mininterval=0, leave=False):  # as the shapes world draws its bar
        pass
    logging.warning("worker logs")  # Python's fallback handler: sys.stderr
    print("worker error line", file=sys.stderr)


def test_a_workers_progress_bars_stay_out_of_the_notebook_and_its_other_output_reaches_it(capfd):
    """Jupyter's kernel shows what any child process writes to its stderr (the file descriptor): a worker's bars,
    such as the shapes world's while it is drawn, filled the cell with a line of percentages per redraw."""
    call_side_by_side({"a": (_draw_bar_and_log, (50,))}, workers=2, progress=False)
    out, err = capfd.readouterr()
    assert "worker bar" not in out + err
    assert "[a] WARNING:root:worker logs" in out and "[a] worker error line" in out


def test_a_call_waits_for_the_calls_it_comes_after(tmp_path):
    slow, quick = (_write_when, (tmp_path / "a", None, 1.0)), (_write_when, (tmp_path / "b", tmp_path / "a"))
    with pytest.raises(RuntimeError, match="'b' failed"):  # without `after`, b starts at once and finds no a
        call_side_by_side({"a": slow, "b": quick}, workers=2, progress=False)
    (tmp_path / "a").unlink(missing_ok=True)  # a was stopped with b, or finished
    call_side_by_side({"b": quick, "a": slow}, workers=2, progress=False, after={"b": {"a"}})
    assert (tmp_path / "b").read_text() == "done"
    (tmp_path / "b").unlink()
    call_side_by_side({"b": quick}, progress=False, after={"b": {"a", "not a call here"}})  # those count as finished
    assert (tmp_path / "b").read_text() == "done"
    with pytest.raises(ValueError, match="wait for each other"):
        call_side_by_side({"a": slow, "b": quick}, workers=2, progress=False, after={"a": {"b"}, "b": {"a"}})


def test_a_fine_tune_trains_after_its_start_and_again_when_the_start_is_retrained(tmp_path):
    def jobs(base_seed):
        return {"tuned": (TrainConfig.for_preset("shapes-tiny", init_from=str(tmp_path / "base"), **TINY),
                          tmp_path / "tuned"),
                "base": (TrainConfig.for_preset("shapes-tiny", seed=base_seed, **TINY), tmp_path / "base"),
                "other": (TrainConfig.for_preset("shapes-tiny", seed=2, **TINY), tmp_path / "other")}

    load_or_train_side_by_side(jobs(0), eval_fn=_no_eval, workers=2, progress=False)
    stamp = lambda name: (tmp_path / name / MODEL_FILE).stat().st_mtime_ns  # noqa: E731
    first = {name: stamp(name) for name in ("tuned", "base", "other")}
    assert first["tuned"] > first["base"]  # started from the finished base
    load_or_train_side_by_side(jobs(1), eval_fn=_no_eval, workers=2, progress=False)  # the base trained anew
    assert stamp("base") > first["base"] and stamp("tuned") > stamp("base")  # and its fine-tune after it
    assert stamp("other") == first["other"]  # what did not change is only loaded


def test_side_by_side_equals_one_after_the_other_and_loads_what_is_finished(tmp_path):
    jobs = {f"seed{s}": (TrainConfig.for_preset("shapes-tiny", seed=s, **TINY), tmp_path / f"seed{s}") for s in (0, 1)}
    results = load_or_train_side_by_side(jobs, eval_fn=_no_eval, workers=2, progress=False)
    assert set(results) == {"seed0", "seed1"}

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what each worker does
    try:
        here = load_or_train(jobs["seed1"][0], tmp_path / "here", progress=False, eval_fn=_no_eval)
    finally:
        torch.set_num_threads(threads)
    for name, p in here.model.named_parameters():
        assert torch.equal(p, dict(results["seed1"].model.named_parameters())[name]), name
    assert any(not torch.equal(a, b)  # and the two seeds made two different runs
               for a, b in zip(results["seed0"].model.parameters(), results["seed1"].model.parameters()))

    stamps = {name: (out / MODEL_FILE).stat().st_mtime_ns for name, (_, out) in jobs.items()}
    load_or_train_side_by_side(jobs, eval_fn=_no_eval, workers=2, progress=False)  # finished: only loaded
    assert stamps == {name: (out / MODEL_FILE).stat().st_mtime_ns for name, (_, out) in jobs.items()}


def test_a_failing_run_is_named(tmp_path):
    good = TrainConfig.for_preset("shapes-tiny", **TINY)
    bad = TrainConfig.for_preset("shapes-tiny", data=str(tmp_path / "no-such-cache"), **TINY)
    with pytest.raises(RuntimeError, match=r"the run 'broken' failed: FileNotFoundError: .*no-such-cache"):
        load_or_train_side_by_side({"good": (good, tmp_path / "good"), "broken": (bad, tmp_path / "broken")},
                                   eval_fn=_no_eval, workers=2, progress=False)


def test_the_bar_ends_full_when_a_call_had_less_to_do_than_counted(tmp_path, monkeypatch):
    bars = []
    real_tqdm = __import__("miniclip.course.side_by_side", fromlist=["tqdm"]).tqdm

    def keep(*args, **kwargs):
        bars.append(real_tqdm(*args, **kwargs))
        return bars[-1]

    monkeypatch.setattr("miniclip.course.side_by_side.tqdm", keep)
    calls = {name: (_write_when, (tmp_path / name,)) for name in ("a", "b")}
    call_side_by_side(calls, workers=2, progress=True, total=10, done=lambda: 3)  # 3 of 10 "steps" ever logged
    assert bars[0].n == bars[0].total == 10
