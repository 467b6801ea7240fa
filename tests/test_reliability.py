"""Nothing lost, nothing silently wrong: each test repeats one way a careless or unlucky user broke a run."""
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import miniclip
from miniclip import probes
from miniclip.__main__ import main
from miniclip.checkpoint import atomic_write_text, read_jsonl, save, write_jsonl
from miniclip.config import TrainConfig
from miniclip.data.sources import load_pairs
from miniclip.evaluate import evaluate_suite, retrieval_metrics
from miniclip.locks import RunInProgressError, lock_holder, process_start
from miniclip.train import load_or_train, train
from miniclip.zeroshot import zeroshot_predict

SMALL = dict(preset="shapes-tiny", steps=8, batch_size=32, num_images=300, warmup_steps=2, log_every=2,
             eval_every=0, checkpoint_every=4)


def no_eval(model, tokenizer):
    return {}


def cli(capsys, *argv):
    """(exit status, stderr) of the miniclip command."""
    capsys.readouterr()
    status = main([str(a) for a in argv])
    return status, capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- outputs never clobber

def test_train_into_an_existing_run_refuses_without_resume_or_overwrite(tmp_path, capsys):
    train(TrainConfig(**SMALL), out=tmp_path / "run", eval_fn=no_eval, progress=False)
    before = (tmp_path / "run" / "metrics.jsonl").read_text()
    with pytest.raises(FileExistsError, match="--resume.*--overwrite"):
        train(TrainConfig(**SMALL), out=tmp_path / "run", eval_fn=no_eval, progress=False)
    status, err = cli(capsys, "train", "--out", tmp_path / "run", "--steps", 2)
    assert status == 2 and "--overwrite" in err and "Traceback" not in err
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == before  # the log was not emptied
    train(TrainConfig(**{**SMALL, "steps": 4}), out=tmp_path / "run", overwrite=True, eval_fn=no_eval, progress=False)
    assert read_jsonl(tmp_path / "run" / "metrics.jsonl")[-1]["step"] == 4


def test_data_of_another_image_size_is_refused_before_the_old_run_is_replaced(tmp_path, capsys):
    train(TrainConfig(**{**SMALL, "steps": 2}), out=tmp_path / "run", eval_fn=no_eval, progress=False)
    files = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()}
    assert cli(capsys, "prepare", "shapes", "--n", 40, "--size", 64, "--out", tmp_path / "c64")[0] == 0
    status, err = cli(capsys, "train", "--data", tmp_path / "c64", "--out", tmp_path / "run", "--overwrite",
                      "--steps", 2, "--batch-size", 8)
    assert status == 2 and len(err.splitlines()) == 1 and "64 px" in err and "--size 32" in err
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()} == files  # --overwrite waited for the data
    status, err = cli(capsys, "train", "--data", tmp_path / "c64", "--out", tmp_path / "new", "--steps", 2)
    assert status == 2 and not (tmp_path / "new").exists()  # a refused new run leaves no empty folder behind


def test_too_few_images_for_a_batch_names_the_flags(tmp_path, capsys):
    status, err = cli(capsys, "train", "--num-images", 10, "--batch-size", 256, "--steps", 2, "--out", tmp_path / "r")
    assert status == 2 and "--num-images" in err and "--batch-size" in err


def test_export_hf_refuses_its_own_run_directory(tmp_path, capsys):
    train(TrainConfig(**{**SMALL, "steps": 2}), out=tmp_path / "run", eval_fn=no_eval, progress=False)
    files = sorted(p.name for p in (tmp_path / "run").iterdir())
    status, err = cli(capsys, "export-hf", tmp_path / "run", tmp_path / "run")
    assert status == 2 and "run directory" in err
    status, err = cli(capsys, "export-hf", tmp_path / "run", tmp_path, "--overwrite")  # the folder of all the runs
    assert status == 2 and "a folder that holds it" in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == files


# ---------------------------------------------------------------------------------------------- the checkpoint set

def test_a_kill_between_the_checkpoint_files_never_mixes_steps(tmp_path, monkeypatch):
    """Killed after model.safetensors of step 8 was written but before the train state: --resume goes back to step 4
    as a whole (weights and optimiser together) and ends exactly where an uninterrupted run ends."""
    import miniclip.train as train_module

    whole = train(TrainConfig(**SMALL), out=tmp_path / "whole", eval_fn=no_eval, progress=False)
    real = train_module.save_train_state

    def killed_at_step_8(model, optimizer, step, path):
        if step == 8:
            raise KeyboardInterrupt("killed")
        real(model, optimizer, step, path)

    monkeypatch.setattr(train_module, "save_train_state", killed_at_step_8)
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(**SMALL), out=tmp_path / "run", eval_fn=no_eval, progress=False)
    monkeypatch.setattr(train_module, "save_train_state", real)
    resumed = train(TrainConfig(**SMALL), out=tmp_path / "run", resume=True, eval_fn=no_eval, progress=False)
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    assert [r["step"] for r in resumed.history] == [r["step"] for r in whole.history]


def test_a_run_killed_in_its_last_checkpoint_or_evaluation_is_unfinished_and_resumes_what_was_lost(tmp_path,
                                                                                                     monkeypatch):
    """The last log row is written before the last checkpoint, and the last evaluation after it: a kill in between
    used to leave a run that counted as finished, with the weights of an earlier step or without its evaluation."""
    import miniclip.train as train_module
    from miniclip.train import run_is_finished
    cfg = TrainConfig(**{**SMALL, "checkpoint_every": 0})  # the last checkpoint before the end is step 0's
    whole = train(cfg, out=tmp_path / "whole", eval_fn=lambda m, t: {"x": 1.0}, progress=False)
    real = train_module._checkpoint

    def killed_in_the_last(out, model, tokenizer, optimizer, step):
        if step == cfg.steps:
            raise KeyboardInterrupt("killed")
        real(out, model, tokenizer, optimizer, step)

    monkeypatch.setattr(train_module, "_checkpoint", killed_in_the_last)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, out=tmp_path / "run", eval_fn=no_eval, progress=False)
    monkeypatch.setattr(train_module, "_checkpoint", real)
    assert not run_is_finished(cfg, tmp_path / "run")
    resumed = load_or_train(cfg, tmp_path / "run", eval_fn=lambda m, t: {"x": 1.0}, progress=False)
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)  # trained again from step 0, to the same weights

    def killed_in_the_evaluation(model, tokenizer):
        raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        train(cfg, out=tmp_path / "eval", eval_fn=killed_in_the_evaluation, progress=False)
    assert not run_is_finished(cfg, tmp_path / "eval")
    rows = read_jsonl(tmp_path / "eval" / "metrics.jsonl")
    finished = load_or_train(cfg, tmp_path / "eval", eval_fn=lambda m, t: {"x": 1.0}, progress=False)
    assert finished.history == rows + [{"step": cfg.steps, "val_x": 1.0}]  # only the evaluation ran, once
    assert run_is_finished(cfg, tmp_path / "eval")
    assert [r["step"] for r in finished.history] == [r["step"] for r in whole.history]


def test_stale_temporary_files_are_swept_when_a_run_resumes(tmp_path):
    train(TrainConfig(**{**SMALL, "steps": 4}), out=tmp_path, eval_fn=no_eval, progress=False)
    orphan = tmp_path / ".model.safetensors.abc123.tmp"
    orphan.write_bytes(b"half a file")
    train(TrainConfig(**SMALL), out=tmp_path, resume=True, eval_fn=no_eval, progress=False)
    assert not orphan.exists()


def test_a_torn_last_metrics_line_is_dropped_with_a_warning(tmp_path):
    path = tmp_path / "metrics.jsonl"
    write_jsonl(path, [{"step": 2, "loss": 3.0}, {"step": 4, "loss": 2.5}])
    with open(path, "a") as f:
        f.write('{"step": 6, "lo')  # killed mid-line
    with pytest.warns(UserWarning, match="torn last line"):
        assert [r["step"] for r in read_jsonl(path)] == [2, 4]
    path.write_text('{"step": 2}\nnot json\n{"step": 6}\n')  # damage in the middle is an error that says where
    with pytest.raises(ValueError, match="line 2"):
        read_jsonl(path)


def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
        (tmp_path / "b.json").write_text("{}")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == (tmp_path / "b.json").stat().st_mode & 0o777 == 0o644


def test_resume_without_a_run_folder_says_so():
    with pytest.raises(ValueError, match="pass out="):  # used to be a TypeError on None / "train_state.safetensors"
        train(TrainConfig(**SMALL), resume=True, eval_fn=no_eval, progress=False)


def test_resume_with_another_preset_names_the_preset(tmp_path, capsys):
    train(TrainConfig(**{**SMALL, "steps": 4}), out=tmp_path, eval_fn=no_eval, progress=False)
    status, err = cli(capsys, "train", "--preset", "coco-small", "--data", "shapes", "--out", tmp_path, "--resume")
    assert status == 2 and "shapes-tiny" in err and len(err.splitlines()) == 1


# ---------------------------------------------------------------------------------------------- honest metrics

def test_a_model_with_nan_weights_never_scores_perfect_recall():
    model = miniclip.MiniCLIP(miniclip.CLIPConfig.preset("shapes-tiny"))
    sim = torch.full((4, 4), float("nan"))
    with pytest.raises(FloatingPointError, match="broken"):
        retrieval_metrics(sim, torch.arange(4))
    tokenizer = miniclip.Tokenizer.train(["a red circle", "a blue star"] * 20, 300, 32)
    model.config.eot_token_id = tokenizer.end_id
    with torch.no_grad():
        model.visual.proj.fill_(float("nan"))
    with pytest.raises(FloatingPointError):
        evaluate_suite(model, tokenizer, "shapes", num_images=100, zeroshot_per_class=1)


def test_a_nan_temperature_is_a_broken_model_too():
    """Sound weights with a NaN logit_scale: zero-shot predictions used to be class 0 for every image, and a cache's
    evaluation (no zero-shot set) reported normal recall with a loss of null."""
    model = miniclip.MiniCLIP(miniclip.CLIPConfig.preset("shapes-tiny"))
    tokenizer = miniclip.Tokenizer.train(["a red circle", "a blue star"] * 20, 300, 32)
    model.config.eot_token_id = tokenizer.end_id
    with torch.no_grad():
        model.logit_scale.fill_(float("nan"))
    data = load_pairs("shapes", "val", image_size=32, n=40)
    with pytest.raises(FloatingPointError, match="temperature"):
        evaluate_suite(model, tokenizer, data)
    with pytest.raises(FloatingPointError, match="temperature"):
        zeroshot_predict(model, data.images[:4], torch.nn.functional.normalize(torch.randn(model.config.embed_dim, 3), dim=0))


def test_a_broken_model_gets_no_probe_score(tmp_path, capsys):
    """NaN features used to give the typographic probe a flip rate of 0 (robust!) and the bias probe gaps of 0
    (unbiased!): argmax and comparisons of NaN quietly make numbers. Now every probe stops with one error."""
    model = miniclip.MiniCLIP(miniclip.CLIPConfig.preset("shapes-tiny"))
    tokenizer = miniclip.Tokenizer.train(["a red circle", "two blue stars with the word star"] * 20, 300, 32)
    model.config.eot_token_id = tokenizer.end_id
    with torch.no_grad():
        model.visual.proj.fill_(float("nan"))
    for probe in (probes.typographic, probes.bias):
        with pytest.raises(FloatingPointError, match="broken"):
            probe(model, tokenizer, per_class=1)
    with pytest.raises(FloatingPointError, match="broken"):
        zeroshot_predict(model, np.zeros((2, 32, 32, 3), np.uint8), torch.eye(64)[:, :3])
    save(model, tokenizer, tmp_path / "run")
    status, err = cli(capsys, "probe", tmp_path / "run", "--smoke")
    assert status == 2 and "broken" in err and len(err.splitlines()) == 1


def test_json_output_writes_null_for_nan():
    from miniclip.checkpoint import to_json

    text = to_json({"loss": float("nan"), "r": [float("inf"), 1.5], "n": torch.tensor(3)}, indent=None)
    assert "NaN" not in text and "Infinity" not in text  # tokens that strict JSON parsers reject
    assert json.loads(text) == {"loss": None, "r": [None, 1.5], "n": 3}


def test_an_evaluation_on_few_images_warns_and_says_how_many():
    model = miniclip.MiniCLIP(miniclip.CLIPConfig.preset("shapes-tiny"))
    tokenizer = miniclip.Tokenizer.train(["a red circle", "a blue star"] * 20, 300, 32)
    model.config.eot_token_id = tokenizer.end_id
    with pytest.warns(UserWarning, match="only 19 held-out images"):
        evaluate_suite(model, tokenizer, "shapes", num_images=19, zeroshot_per_class=0)


# ---------------------------------------------------------------------------------------------- flags and files

@pytest.mark.parametrize("flag, value", [("--steps", 0), ("--steps", -3), ("--batch-size", 0), ("--batch-size", -1),
                                         ("--num-images", -5), ("--lr", "nan"), ("--lr", -0.1), ("--lr", "inf"),
                                         ("--word-fraction", 2), ("--word-fraction", -0.5)])
def test_bad_training_flags_are_named_before_any_work(tmp_path, capsys, flag, value):
    status, err = cli(capsys, "train", "--out", tmp_path / "run", flag, value)
    assert status == 2 and flag in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_a_missing_start_is_named_with_its_flag_before_the_data_is_made(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("miniclip.train.load_pairs", lambda *a, **k: pytest.fail("the data was made first"))
    status, err = cli(capsys, "train", "--out", tmp_path / "run", "--init-from", tmp_path / "no-run", "--steps", 1)
    assert status == 2 and err.count("--init-from") == 1 and "no-run" in err and len(err.splitlines()) == 1


def test_eval_of_a_run_whose_cache_is_not_there_asks_for_data(tmp_path, capsys):
    train(TrainConfig(**{**SMALL, "steps": 2}), out=tmp_path / "run", eval_fn=no_eval, progress=False)
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    (tmp_path / "run" / "run.json").write_text(json.dumps({**record, "data": "data/coco64"}))  # trained elsewhere
    status, err = cli(capsys, "eval", tmp_path / "run")
    assert status == 2 and "data/coco64" in err and "--data" in err and len(err.splitlines()) == 1


def test_a_damaged_finished_run_is_kept_and_the_lesson_says_how_to_train_it_again(tmp_path):
    cfg = TrainConfig(**{**SMALL, "steps": 2})
    load_or_train(cfg, tmp_path / "run", progress=False, eval_fn=no_eval)
    (tmp_path / "run" / "model.safetensors").write_bytes(b"half a file")
    with pytest.raises(ValueError, match=r"model.safetensors.*delete the folder"):
        load_or_train(cfg, tmp_path / "run", progress=False, eval_fn=no_eval)
    assert (tmp_path / "run" / "model.safetensors").read_bytes() == b"half a file"  # nothing replaced behind our back


def test_bad_shares_of_the_shapes_world_are_refused(tmp_path, capsys):
    status, err = cli(capsys, "prepare", "shapes", "--n", 10, "--word-fraction", -1, "--out", tmp_path / "c")
    assert status == 2 and "word_fraction" in err and not (tmp_path / "c" / "images.u8").exists()


def test_resume_continues_the_runs_own_recipe_not_the_presets(tmp_path, capsys):
    """`train --out R --resume` without the flags the run was started with used to go on with the preset's recipe
    (1000 steps of 256 pairs on 50,000 images), silently mixing two runs in one folder."""
    run = tmp_path / "run"
    small = ["--steps", 4, "--batch-size", 16, "--num-images", 300, "--eval-every", 0, "--checkpoint-every", 2]
    assert cli(capsys, "train", "--out", run, *small)[0] == 0
    status, err = cli(capsys, "train", "--out", run, "--resume")
    recipe = json.loads((run / "run.json").read_text())
    assert status == 0 and (recipe["steps"], recipe["batch_size"], recipe["num_images"]) == (4, 16, 300)
    assert read_jsonl(run / "metrics.jsonl")[-1]["step"] == 4  # finished: nothing more to do
    status, err = cli(capsys, "train", "--out", run, "--resume", "--steps", 6)  # a flag given again changes it
    assert status == 0 and "--steps 6" in err and "trained with 4" in err
    assert err.startswith("miniclip train: warning: --resume with --steps 6")  # one line, not Python's file:line
    assert read_jsonl(run / "metrics.jsonl")[-1]["step"] == 6 and json.loads((run / "run.json").read_text())["batch_size"] == 16


def test_a_run_of_several_processes_is_kept_and_a_fine_tune_resumes_without_its_start(tmp_path, monkeypatch):
    """load_or_train used to delete a finished run trained with torchrun (run.json's world_size 2 is not this
    process's 1), and --resume of a fine-tune needed the run it started from, though the checkpoint holds it all."""
    import shutil

    import miniclip.train as train_module
    cfg = TrainConfig(**{**SMALL, "steps": 2})
    load_or_train(cfg, tmp_path / "base", eval_fn=no_eval, progress=False)
    record = json.loads((tmp_path / "base" / "run.json").read_text())
    (tmp_path / "base" / "run.json").write_text(json.dumps(record | {"world_size": 2}))
    real_train, real_checkpoint = train_module.train, train_module._checkpoint

    def no_training(*args, **kwargs):
        raise AssertionError("the finished run was trained again")

    monkeypatch.setattr(train_module, "train", no_training)
    assert load_or_train(cfg, tmp_path / "base", eval_fn=no_eval, progress=False).history[-1]["step"] == 2
    monkeypatch.setattr(train_module, "train", real_train)

    def killed_at_step_8(out, model, tokenizer, optimizer, step):
        if step == 8:
            raise KeyboardInterrupt("killed")
        real_checkpoint(out, model, tokenizer, optimizer, step)

    tune = TrainConfig(**{**SMALL, "init_from": str(tmp_path / "base")})
    monkeypatch.setattr(train_module, "_checkpoint", killed_at_step_8)
    with pytest.raises(KeyboardInterrupt):
        train(tune, out=tmp_path / "tune", eval_fn=no_eval, progress=False)
    monkeypatch.setattr(train_module, "_checkpoint", real_checkpoint)
    shutil.rmtree(tmp_path / "base")
    resumed = train(tune, out=tmp_path / "tune", resume=True, eval_fn=no_eval, progress=False)
    assert resumed.history[-1]["step"] == 8


def test_batch_size_one_warns_that_nothing_is_learned(tmp_path, capsys):
    status, err = cli(capsys, "train", "--out", tmp_path / "run", "--steps", 1, "--batch-size", 1,
                      "--num-images", 50, "--eval-every", 0)
    assert status == 0 and "--batch-size 1" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_device_cuda_without_a_gpu_is_refused_before_the_data_is_generated(tmp_path, capsys):
    status, err = cli(capsys, "train", "--out", tmp_path / "run", "--device", "cuda")
    assert status == 2 and "--device" in err and not (tmp_path / "run").exists()


def test_a_damaged_model_file_is_named(tmp_path, capsys):
    model = miniclip.MiniCLIP(miniclip.CLIPConfig.preset("shapes-tiny"))
    tokenizer = miniclip.Tokenizer.train(["a red circle", "a blue star"] * 20, 300, 32)
    model.config.eot_token_id = tokenizer.end_id
    save(model, tokenizer, tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 100)
    status, err = cli(capsys, "eval", tmp_path)
    assert status == 2 and "model.safetensors" in err and "Traceback" not in err
    save(model, tokenizer, tmp_path)
    (tmp_path / "tokenizer.json").write_bytes(b"\xff\xfe not a tokenizer")
    status, err = cli(capsys, "eval", tmp_path)
    assert status == 2 and "tokenizer.json" in err


def test_a_tokenizer_from_another_run_is_refused(tmp_path):
    model = miniclip.MiniCLIP(miniclip.CLIPConfig.preset("shapes-tiny", eot_token_id=5))
    tokenizer = miniclip.Tokenizer.train(["a red circle", "a blue star"] * 20, 300, 32)  # its end id is 3
    save(model, tokenizer, tmp_path)
    with pytest.raises(ValueError, match="different runs"):
        miniclip.load(tmp_path)


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ValueError, match="--steps"):
        main(["--debug", "train", "--out", str(tmp_path / "run"), "--steps", "0"])


def test_an_out_folder_that_cannot_be_made_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    import miniclip.train as train_module

    (tmp_path / "a_file").write_text("not a folder")
    monkeypatch.setattr(train_module, "load_pairs", lambda *a, **k: pytest.fail("data was loaded first"))
    status, err = cli(capsys, "train", "--out", tmp_path / "a_file" / "run", "--steps", 2)
    assert status == 2 and "a_file" in err



def test_miniclip_eval_scores_at_the_sizes_the_run_was_evaluated_at(tmp_path, capsys):
    """`miniclip eval` reproduces the run's own last evaluation: the same held-out images, the same zero-shot set."""
    run = tmp_path / "run"
    small = ["--steps", 2, "--batch-size", 16, "--num-images", 300, "--eval-images", 110, "--eval-per-class", 2]
    assert cli(capsys, "train", "--out", run, *small)[0] == 0
    assert main(["eval", str(run), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    last = read_jsonl(run / "metrics.jsonl")[-1]
    assert metrics["num_images"] == last["val_num_images"] == 110
    assert metrics["zeroshot_top1"] == pytest.approx(last["val_zeroshot_top1"])  # 72 images: the same ones
    assert main(["eval", str(run), "--json", "--split", "test"]) == 0  # held-out images of their own
    test = json.loads(capsys.readouterr().out)
    assert test["split"] == "test" and test["num_images"] == 110 and test["loss"] != metrics["loss"]


def test_an_unknown_device_is_one_line_that_names_the_flag(tmp_path, capsys):
    for device in ("tpu", "cuda:7"):
        status, err = cli(capsys, "train", "--out", tmp_path / device, "--device", device, "--steps", 1)
        assert status == 2 and f"--device {device}" in err and len(err.splitlines()) == 1, err
        assert not (tmp_path / device).exists() or not any((tmp_path / device).iterdir())


def test_a_cache_trains_on_its_first_num_images_and_refuses_the_shapes_worlds_knobs(tmp_path, capsys):
    """--num-images on a cache used to be ignored (run.json said 100, the run saw them all); --word-fraction too."""
    assert cli(capsys, "prepare", "shapes", "--n", 300, "--out", tmp_path / "c")[0] == 0
    assert load_pairs(str(tmp_path / "c"), "train", n=100).num_images == 100
    assert load_pairs(str(tmp_path / "c"), "train", n=10_000).num_images == 270  # all it holds (30 kept for val)
    status, err = cli(capsys, "train", "--data", tmp_path / "c", "--num-images", 20, "--batch-size", 32,
                      "--out", tmp_path / "run", "--steps", 1)
    assert status == 2 and "--num-images" in err and len(err.splitlines()) == 1  # 20 images make no batch of 32
    status, err = cli(capsys, "train", "--data", tmp_path / "c", "--word-fraction", 0.5, "--out", tmp_path / "r2")
    assert status == 2 and "--word-fraction" in err and "prepare shapes" in err and not (tmp_path / "r2").exists()


def test_prepare_coco_names_a_broken_captions_file_or_zip_and_refuses_an_empty_source(tmp_path, capsys):
    (tmp_path / "half.json").write_text('{"images": [{"id": 1, "file_na')  # a download cut short
    status, err = cli(capsys, "prepare", "coco", "--source", "coco", "--annotations", tmp_path / "half.json",
                      "--images", tmp_path, "--split", "train", "--out", tmp_path / "c1")
    assert status == 2 and "half.json is not valid JSON" in err and len(err.splitlines()) == 1
    captions = tmp_path / "captions_train2017.json"
    captions.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "width": 9, "height": 9}],
                                    "annotations": [{"id": 1, "image_id": 1, "caption": "a cat"}]}))
    (tmp_path / "train2017.zip").write_text("not a zip")
    status, err = cli(capsys, "prepare", "coco", "--source", "coco", "--annotations", captions,
                      "--images", tmp_path / "train2017.zip", "--out", tmp_path / "c2")
    assert status == 2 and "train2017.zip is not a readable zip file" in err
    (tmp_path / "karpathy.json").write_text(json.dumps({"images": []}))
    status, err = cli(capsys, "prepare", "coco", "--source", "karpathy", "--karpathy-json", tmp_path / "karpathy.json",
                      "--images", tmp_path, "--out", tmp_path / "c3")
    assert status == 2 and "gave no records" in err and not (tmp_path / "c3" / "manifest.json").exists()


# ------------------------------------------------------------------------------------ one trainer per run folder

def _lock(folder, pid):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".miniclip.lock").write_text(json.dumps({"pid": pid, "host": socket.gethostname()}))


def test_a_second_trainer_into_a_run_being_trained_is_refused_and_changes_nothing(tmp_path, capsys):
    """Two notebooks that start the same run at once used to train into one folder together, mixing their
    checkpoints and log rows. Now the second gets one message; the first's files are untouched."""
    cfg = TrainConfig(**{**SMALL, "steps": 2})
    load_or_train(cfg, tmp_path / "run", progress=False, eval_fn=no_eval)
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()}
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # a live process holds it
    try:
        _lock(tmp_path / "run", other.pid)
        with pytest.raises(RunInProgressError, match=rf"pid {other.pid}.*wait for it to finish"):
            train(TrainConfig(**{**SMALL, "steps": 3}), out=tmp_path / "run", overwrite=True, progress=False,
                  eval_fn=no_eval)
        status, err = cli(capsys, "train", "--out", tmp_path / "run", "--overwrite", "--steps", 1)
        assert status == 2 and "being trained by another process" in err and len(err.splitlines()) == 1
    finally:
        other.kill()
        other.wait()
    after = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.name != ".miniclip.lock"}
    assert after == before


@pytest.mark.skipif(process_start(os.getpid()) is None, reason="which process a pid names is read from Linux's /proc")
def test_a_lock_whose_pid_now_names_another_process_is_stale(tmp_path):
    """A restarted machine or container numbers its processes again: the pid in an old lock may name a live process
    that never trained there. The lock records which process it was (boot and start), and another one cannot hold it."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    lock = tmp_path / "run" / ".miniclip.lock"
    try:
        _lock(tmp_path / "run", other.pid)  # an older lock, without "start": the live pid holds it, as before
        assert lock_holder(tmp_path / "run")["pid"] == other.pid
        lock.write_text(json.dumps({"pid": other.pid, "host": socket.gethostname(), "start": process_start(other.pid)}))
        assert lock_holder(tmp_path / "run")["pid"] == other.pid  # that very process
        lock.write_text(json.dumps({"pid": other.pid, "host": socket.gethostname(), "start": "another-boot/123"}))
        assert lock_holder(tmp_path / "run") is None  # the same pid, another process
    finally:
        other.kill()
        other.wait()
    seen = []

    def look(model, tokenizer):  # during training: the lock names this process and which one it is
        seen.append(json.loads(lock.read_text()))
        return {}

    train(TrainConfig(**{**SMALL, "steps": 2}), out=tmp_path / "run", overwrite=True, eval_fn=look, progress=False)
    assert seen == [{"pid": os.getpid(), "host": socket.gethostname(), "start": process_start(os.getpid())}]


def test_a_lock_left_by_a_dead_process_is_taken_over_and_released(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid now names no process
    _lock(tmp_path / "run", dead.pid)
    seen = []

    def look(model, tokenizer):  # during training: the lock is ours
        seen.append(json.loads((tmp_path / "run" / ".miniclip.lock").read_text())["pid"])
        return {}

    train(TrainConfig(**{**SMALL, "steps": 2}), out=tmp_path / "run", overwrite=True, eval_fn=look, progress=False)
    assert seen == [os.getpid()] and not (tmp_path / "run" / ".miniclip.lock").exists()

    def fail(model, tokenizer):
        raise KeyboardInterrupt  # the notebook's stop button

    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(**{**SMALL, "steps": 2}), out=tmp_path / "run", overwrite=True, eval_fn=fail, progress=False)
    assert not (tmp_path / "run" / ".miniclip.lock").exists()  # released on the way out


def test_a_lock_of_another_machine_holds_while_its_run_logs_and_is_taken_over_when_it_stops(tmp_path):
    """A Colab runtime that disconnected leaves its lock on Drive; its pid cannot be asked from here, so the lock
    counts as held only while the run keeps writing (the lock or its log) within LOCK_STALE_S."""
    from miniclip.locks import LOCK_STALE_S
    run = tmp_path / "run"
    run.mkdir()
    (run / ".miniclip.lock").write_text(json.dumps({"pid": 1234, "host": "another-machine"}))
    cfg = TrainConfig(**{**SMALL, "steps": 1})
    with pytest.raises(RunInProgressError, match="another-machine"):
        train(cfg, out=run, overwrite=True, eval_fn=no_eval, progress=False)
    old = time.time() - LOCK_STALE_S - 1
    os.utime(run / ".miniclip.lock", (old, old))  # nothing written since: the machine went away
    train(cfg, out=run, overwrite=True, eval_fn=no_eval, progress=False)
    assert (run / "model.safetensors").is_file() and not (run / ".miniclip.lock").exists()


def test_a_second_builder_of_a_cache_is_refused(tmp_path, capsys):
    """Two builds appending to one images.u8 would interleave their chunks: images and captions out of step."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _lock(tmp_path / "c", other.pid)
        status, err = cli(capsys, "prepare", "shapes", "--n", 50, "--out", tmp_path / "c")
        assert status == 2 and "being built by another process" in err and len(err.splitlines()) == 1
        assert not (tmp_path / "c" / "images.u8").exists()
    finally:
        other.kill()
        other.wait()
    assert cli(capsys, "prepare", "shapes", "--n", 50, "--out", tmp_path / "c")[0] == 0  # taken over: it is gone
    assert (tmp_path / "c" / "manifest.json").is_file() and not (tmp_path / "c" / ".miniclip.lock").exists()


def test_data_that_is_not_a_cache_says_what_it_is(tmp_path, capsys):
    """--data pointed at a run folder, at a half-built cache, or at a folder of images: three messages, each saying
    what to do (before, all three said to finish or resume a build)."""
    train(TrainConfig(**{**SMALL, "steps": 1}), out=tmp_path / "run", eval_fn=no_eval, progress=False)
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "progress.json").write_text("{}")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"")
    for folder, expected in (("run", "is a run folder"), ("half", "did not finish"), ("photos", "holds no cache")):
        status, err = cli(capsys, "train", "--data", tmp_path / folder, "--out", tmp_path / f"out-{folder}")
        assert status == 2 and expected in err and len(err.splitlines()) == 1, err


def test_a_cache_without_a_val_split_is_named_before_training(tmp_path, capsys):
    """train/ and test/ but no val/ (as the README's prepare commands make them): the evaluation's missing data used
    to be found after the whole run had trained, with a message that did not mention the split."""
    for split in ("train", "test"):
        assert cli(capsys, "prepare", "shapes", "--n", 60, "--out", tmp_path / "data" / split)[0] == 0
    status, err = cli(capsys, "train", "--data", tmp_path / "data", "--out", tmp_path / "run", "--steps", 2,
                      "--batch-size", 16)
    assert status == 2 and "no val" in err and "--split val" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "run" / "model.safetensors").exists()  # nothing was trained


def test_prepare_coco_names_a_missing_file_by_its_flag_and_says_what_to_do_offline(tmp_path, capsys):
    status, err = cli(capsys, "prepare", "coco", "--source", "coco", "--annotations", tmp_path / "nope.json",
                      "--images", tmp_path, "--out", tmp_path / "c")
    assert status == 2 and err.startswith("miniclip prepare: --annotations") and "no such file" in err
    status, err = cli(capsys, "prepare", "coco", "--source", "hf", "--limit", 2, "--out", tmp_path / "hf")  # offline
    assert status == 2 and "--hf-data-files" in err and len(err.splitlines()) == 1, err


def test_overwrite_replaces_only_a_run(tmp_path, capsys):
    """--overwrite used to empty any folder: a folder of someone's work, `--out .`, or the cache named by --data."""
    (tmp_path / "mydocs").mkdir()
    (tmp_path / "mydocs" / "thesis.txt").write_text("three years")
    assert cli(capsys, "prepare", "shapes", "--n", 60, "--out", tmp_path / "cache")[0] == 0
    cache = {p.name: p.read_bytes() for p in (tmp_path / "cache").iterdir()}
    for out, data in ((tmp_path / "mydocs", "shapes"), (tmp_path / "cache", tmp_path / "cache")):
        status, err = cli(capsys, "train", "--data", data, "--out", out, "--overwrite", "--steps", 1)
        assert status == 2 and "holds no run.json" in err and len(err.splitlines()) == 1, err
    assert (tmp_path / "mydocs" / "thesis.txt").read_text() == "three years"
    assert {p.name: p.read_bytes() for p in (tmp_path / "cache").iterdir()} == cache
    train(TrainConfig(**{**SMALL, "steps": 1}), out=tmp_path / "run", eval_fn=no_eval, progress=False)
    (tmp_path / "run" / "history.png").write_bytes(b"a figure drawn beside the run")  # as the demo does
    train(TrainConfig(**{**SMALL, "steps": 2}), out=tmp_path / "run", overwrite=True, eval_fn=no_eval, progress=False)
    assert read_jsonl(tmp_path / "run" / "metrics.jsonl")[-1]["step"] == 2  # a run folder is still replaced


def test_a_run_killed_before_it_wrote_anything_but_its_lock_starts_again_without_a_flag(tmp_path, capsys):
    """kill -9 during the data's generation leaves only the lock: the folder counts as empty, not as a run."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _lock(tmp_path / "run", dead.pid)
    status, err = cli(capsys, "train", "--out", tmp_path / "run", "--steps", 1, "--batch-size", 16,
                      "--num-images", 100, "--eval-images", 100, "--eval-per-class", 1)
    assert status == 0, err
    assert (tmp_path / "run" / "model.safetensors").is_file() and not (tmp_path / "run" / ".miniclip.lock").exists()


def test_follow_writer_waits_for_another_process_with_its_logged_steps(tmp_path, capsys):
    """Lesson 5 started while lesson 4 still trains the main run: it waits, with the other's steps as its bar."""
    from miniclip.locks import follow_writer
    run = tmp_path / "main"
    run.mkdir()
    script = ("import json, sys, time; from miniclip.locks import run_lock\n"
              f"with run_lock({str(run)!r}):\n"
              "    for step in (1, 2, 3):\n"
              f"        open({str(run / 'metrics.jsonl')!r}, 'a').write(json.dumps({{'step': step}}) + '\\n')\n"
              "        time.sleep(0.5)\n")
    other = subprocess.Popen([sys.executable, "-c", script])
    try:
        _wait_for_lock(run, other)
        follow_writer(run, steps=3, progress=False, poll_s=0.05)
        assert not (run / ".miniclip.lock").exists()  # returned only once the other process had finished
        assert read_jsonl(run / "metrics.jsonl")[-1]["step"] == 3
        assert "another process" in capsys.readouterr().out
    finally:
        other.kill()
        other.wait()
    follow_writer(run, steps=3, progress=False)  # nobody holds it: returns at once
    assert capsys.readouterr().out == ""


def _wait_for_lock(run, other):
    deadline = time.time() + 60  # until the other process holds the lock (its import of torch takes seconds)
    while not (run / ".miniclip.lock").exists() and other.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert (run / ".miniclip.lock").exists(), "the other process never took the lock"


def test_load_or_train_waits_for_the_run_another_notebook_trains_then_loads_it(tmp_path, capsys, monkeypatch):
    """Lesson 8 started while lesson 7 still trains the probes' base run: load_or_train (as the lessons call it)
    follows the other's steps and loads what it made, instead of stopping at the lock or training it again."""
    import miniclip.train
    run, recipe = tmp_path / "run", {**SMALL, "steps": 60}
    script = ("from miniclip.config import TrainConfig; from miniclip.train import train\n"
              f"train(TrainConfig(**{recipe!r}), out={str(run)!r}, progress=False, eval_fn=lambda m, t: {{}})\n")
    other = subprocess.Popen([sys.executable, "-c", script])
    try:
        _wait_for_lock(run, other)

        def train_again(*args, **kwargs):
            raise AssertionError("load_or_train trained the run a second time")

        monkeypatch.setattr(miniclip.train, "train", train_again)
        result = load_or_train(TrainConfig(**recipe), run, progress=False, eval_fn=no_eval)
        assert other.wait(timeout=60) == 0
    finally:
        other.kill()
        other.wait()
    assert "another process" in capsys.readouterr().out
    assert [row["step"] for row in result.history][-1] == 60 and result.history == read_jsonl(run / "metrics.jsonl")
