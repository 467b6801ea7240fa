"""course.side_by_side: runs trained in worker processes equal the same runs trained here on one thread."""
import pytest
import torch

from miniclip.config import TrainConfig
from miniclip.course.side_by_side import load_or_train_side_by_side
from miniclip.train import MODEL_FILE, load_or_train

TINY = dict(steps=3, batch_size=16, num_images=200, eval_every=0, checkpoint_every=0)


def _no_eval(model, tokenizer):  # module-level: the workers must be able to unpickle it
    return {}


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
