import argparse
import dataclasses
import json
import math
import os
import shutil
import socket
import warnings

import pytest
import torch

import miniclip
from miniclip.data.shapes import swap_relation
from miniclip.evaluate import evaluate_suite
from miniclip.train import TrainConfig, load_or_train, run_is_finished, train

SMALL = dict(preset="shapes-tiny", steps=12, batch_size=32, num_images=400, warmup_steps=3, log_every=2,
             eval_every=0, checkpoint_every=4)


def no_eval(model, tokenizer):
    return {}


def test_swap_relation():
    assert swap_relation("a red circle to the left of a blue star") == "a blue star to the left of a red circle"
    assert swap_relation("a photo of a red circle above a blue star") == "a photo of a blue star above a red circle"
    assert swap_relation("two blue squares") is None
    assert swap_relation("a photo of a small red heart below a cross.") == "a photo of a cross below a small red heart."
    assert swap_relation("a red circle and a blue star") is None


def test_lr_schedule_warmup_then_cosine():
    from miniclip.train import lr_at

    cfg = TrainConfig(lr=1.0, warmup_steps=10, steps=110)
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(60, cfg) == pytest.approx(0.5) and lr_at(110, cfg) == pytest.approx(0.0, abs=1e-12)


def test_param_groups_decay_only_matrices():
    from miniclip.train import param_groups

    model = miniclip.MiniCLIP(miniclip.CLIPConfig.preset("shapes-tiny"))
    names = {id(p): n for n, p in model.named_parameters()}
    for g in param_groups(model, 0.1, 0.1):
        for p in g["params"]:
            n = names[id(p)]
            decayed = g["weight_decay"] > 0
            assert decayed == (p.ndim >= 2 and "embedding" not in n), n
            assert g["lr_scale"] == (0.1 if n.startswith("text.") else 1.0), n


def test_run_directory_and_history(tmp_path):
    result = train(TrainConfig(**SMALL), out=tmp_path / "run", eval_fn=lambda m, t: {"zeroshot_top1": 0.5}, progress=False)
    names = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "train_state.safetensors", "run.json",
            "metrics.jsonl"} <= names
    assert not any(n.endswith(".png") for n in names)  # train() draws nothing: figures are the caller's
    rows = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows == result.history
    losses = [r["loss"] for r in rows if "loss" in r]
    assert len(losses) == 6 and all(math.isfinite(l) for l in losses)
    assert rows[-1] == {"step": 12, "val_zeroshot_top1": 0.5}
    model, tok = miniclip.load(tmp_path / "run")
    assert tok.vocab_size <= model.config.vocab_size


def test_resume_reaches_the_same_weights_bit_for_bit(tmp_path):
    full = train(TrainConfig(**SMALL), out=tmp_path / "a", eval_fn=no_eval, progress=False)

    calls = {"n": 0}

    def interrupt_at_step_6(model, tokenizer):  # eval runs every 3 steps; the 2nd call is at step 6
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return {}

    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(**{**SMALL, "eval_every": 3}), out=tmp_path / "b", eval_fn=interrupt_at_step_6, progress=False)
    assert json.loads((tmp_path / "b" / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 6
    with pytest.warns(UserWarning, match=r"--resume with --eval-every 0 \(.* was trained with 3\)"):  # said, not silent
        resumed = train(TrainConfig(**SMALL), out=tmp_path / "b", eval_fn=no_eval, resume=True, progress=False)
    for (name, a), (_, b) in zip(full.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name
    assert [r["loss"] for r in full.history if "loss" in r] == [r["loss"] for r in resumed.history if "loss" in r]


def test_resuming_a_finished_run_says_that_nothing_is_trained(tmp_path):
    first = train(TrainConfig(**SMALL), out=tmp_path, progress=False, eval_fn=no_eval)
    with pytest.warns(UserWarning, match="already at its last step.*no step is trained.*--steps"):
        again = train(TrainConfig(**SMALL), out=tmp_path, progress=False, eval_fn=no_eval, resume=True)
    assert again.history == first.history
    with pytest.warns(UserWarning, match="already at its last step"):  # another flag changed: still said
        train(TrainConfig(**{**SMALL, "lr": 1e-3}), out=tmp_path, progress=False, eval_fn=no_eval, resume=True)
    with pytest.raises(ValueError, match="--steps 8: .* already at step 12; give --steps 12 or more"):
        train(TrainConfig(**{**SMALL, "steps": 8}), out=tmp_path, progress=False, eval_fn=no_eval, resume=True)
    assert json.loads((tmp_path / "run.json").read_text())["steps"] == 12  # and run.json still says so
    with warnings.catch_warnings():  # more steps: it trains on, and says nothing of the kind
        warnings.filterwarnings("error", message=".*already at its last step")
        longer = train(TrainConfig(**{**SMALL, "steps": 14}), out=tmp_path, progress=False, eval_fn=no_eval,
                       resume=True)
    assert longer.history[-1]["step"] == 14


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    def poison(model, tokenizer):
        with torch.no_grad():
            model.text.positional_embedding.fill_(float("nan"))
        return {}

    with pytest.raises(FloatingPointError, match="step 8.*last good checkpoint.*--resume"):
        train(TrainConfig(**{**SMALL, "eval_every": 8}), out=tmp_path, eval_fn=poison, progress=False)
    model, _ = miniclip.load(tmp_path)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert json.loads(open(tmp_path / "run.json").read())["steps"] == 12


def test_hard_negatives_train(tmp_path):
    result = train(TrainConfig(**{**SMALL, "hard_negatives": True, "steps": 4, "checkpoint_every": 0}),
                   eval_fn=no_eval, progress=False)
    assert all(math.isfinite(r["loss"]) for r in result.history if "loss" in r)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, path):
    import torch.distributed as dist

    from miniclip.train import _Features, train_step
    from safetensors.torch import save_file

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = miniclip.MiniCLIP(miniclip.CLIPConfig.preset("shapes-tiny"))
    net = torch.nn.parallel.DistributedDataParallel(_Features(model))
    images, tokens, negatives = _ddp_batch()
    n = images.shape[0] // world
    sl = slice(rank * n, (rank + 1) * n)
    loss = train_step(net, images[sl], tokens[sl], negatives[rank:rank + 1])
    loss.backward()
    losses = [torch.zeros(()) for _ in range(world)]
    dist.all_gather(losses, loss.detach())
    if rank == 0:
        grads = {k: p.grad for k, p in model.named_parameters()}
        save_file({"loss": torch.stack(losses).mean(), **grads}, path)
    dist.barrier()  # leave together: a rank that tears gloo down while the other still works can abort it
    dist.destroy_process_group()


def _ddp_batch():
    g = torch.Generator().manual_seed(1)
    images = torch.randn(8, 3, 32, 32, generator=g)
    tokens = torch.randint(4, 300, (8, 32), generator=g)
    tokens[:, 10], tokens[:, 11:] = 3, 0
    negatives = torch.randint(4, 300, (2, 32), generator=g)
    negatives[:, 12], negatives[:, 13:] = 3, 0
    return images, tokens, negatives


def test_ddp_equals_one_process_on_the_concatenated_batch(tmp_path):
    import torch.multiprocessing as mp
    from safetensors.torch import load_file

    from miniclip.train import _Features, train_step

    path = str(tmp_path / "ddp.safetensors")
    mp.spawn(_ddp_worker, args=(2, _free_port(), path), nprocs=2, join=True)
    ddp = load_file(path)

    torch.manual_seed(0)
    model = miniclip.MiniCLIP(miniclip.CLIPConfig.preset("shapes-tiny"))
    images, tokens, negatives = _ddp_batch()
    loss = train_step(_Features(model), images, tokens, negatives)
    loss.backward()
    torch.testing.assert_close(ddp["loss"], loss.detach(), rtol=1e-5, atol=1e-6)
    for k, p in model.named_parameters():
        torch.testing.assert_close(ddp[k], p.grad, rtol=1e-4, atol=1e-6, msg=k)


def test_load_or_train_reuses_a_finished_run(tmp_path):
    cfg = TrainConfig(**{**SMALL, "steps": 4})
    first = load_or_train(cfg, tmp_path, eval_fn=no_eval, progress=False)
    stamp = (tmp_path / "model.safetensors").stat().st_mtime_ns
    again = load_or_train(cfg, tmp_path, eval_fn=no_eval, progress=False)
    assert (tmp_path / "model.safetensors").stat().st_mtime_ns == stamp  # loaded, not retrained
    assert again.history == first.history
    for a, b in zip(first.model.state_dict().values(), again.model.state_dict().values()):
        assert torch.equal(a, b)
    load_or_train(TrainConfig(**{**SMALL, "steps": 5}), tmp_path, eval_fn=no_eval, progress=False)
    assert (tmp_path / "model.safetensors").stat().st_mtime_ns != stamp  # another recipe: trained again


def test_the_evaluation_is_part_of_the_recipe(tmp_path):
    """The default evaluation scores cfg.eval_images and cfg.eval_per_class, and run.json records them: a finished
    run is not reused for a curve measured at other sizes (lesson 08's probe runs evaluate at the lesson's sizes)."""
    cfg = TrainConfig(**{**SMALL, "steps": 2, "eval_images": 120, "eval_per_class": 2})
    first = load_or_train(cfg, tmp_path, progress=False)
    scored = [r for r in first.history if "val_num_images" in r]
    assert [r["val_num_images"] for r in scored] == [120]
    assert json.loads((tmp_path / "run.json").read_text())["eval_per_class"] == 2
    assert run_is_finished(cfg, tmp_path)
    assert not run_is_finished(dataclasses.replace(cfg, eval_images=150), tmp_path)
    assert not run_is_finished(dataclasses.replace(cfg, eval_per_class=3), tmp_path)
    with pytest.raises(ValueError, match="eval_images"):
        TrainConfig(**{**SMALL, "eval_images": 0})
    with pytest.raises(ValueError, match="num_images >= 1"):  # it used to mean "the default 1,000"
        evaluate_suite(first.model, first.tokenizer, "shapes", num_images=0)


def test_a_run_recorded_before_a_new_trainconfig_field_still_counts_as_finished(tmp_path):
    cfg = TrainConfig(**{**SMALL, "steps": 4})
    load_or_train(cfg, tmp_path, eval_fn=no_eval, progress=False)
    record = json.loads((tmp_path / "run.json").read_text())
    del record["init_from"]  # as written by a version of miniclip without that field (at its default, "")
    (tmp_path / "run.json").write_text(json.dumps(record))
    stamp = (tmp_path / "model.safetensors").stat().st_mtime_ns
    load_or_train(cfg, tmp_path, eval_fn=no_eval, progress=False)
    assert (tmp_path / "model.safetensors").stat().st_mtime_ns == stamp  # loaded, not retrained
    tuned = TrainConfig(**{**SMALL, "steps": 4, "init_from": str(tmp_path)})
    assert not miniclip.train.run_is_finished(tuned, tmp_path)  # a field away from its default still counts


def test_training_learns_the_shapes_world():
    """A step count, never a time: 150 steps of 128 pairs take the loss down and zero-shot well above chance."""
    result = train(TrainConfig.for_preset("shapes-tiny", steps=150, batch_size=128, num_images=4000, warmup_steps=20,
                                          log_every=10, eval_every=0, checkpoint_every=0),
                   eval_fn=lambda m, t: evaluate_suite(m, t, "shapes", num_images=200, zeroshot_per_class=5),
                   progress=False)
    losses = [r["loss"] for r in result.history if "loss" in r]
    chance = 1 / 36
    assert losses[-1] < losses[0] - 1.0, losses  # from about ln(128) = 4.85 down by more than a nat
    assert result.history[-1]["val_zeroshot_top1"] > 4 * chance


def test_hard_negatives_reach_the_loss_as_extra_columns():
    """train_step with m hard negatives scores n images against n + m captions, and the gradient changes."""
    from miniclip.loss import clip_loss
    from miniclip.train import _Features, train_step

    torch.manual_seed(0)
    model = miniclip.MiniCLIP(miniclip.CLIPConfig.preset("shapes-tiny"))
    images, tokens, negatives = _ddp_batch()
    net = _Features(model)

    def grads(loss):
        model.zero_grad()
        loss.backward()
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    with_negatives = train_step(net, images, tokens, negatives)
    g_with = grads(with_negatives)
    without = train_step(net, images, tokens)
    g_without = grads(without)
    image_f = torch.nn.functional.normalize(model.encode_image(images), dim=-1)
    text_f = torch.nn.functional.normalize(model.encode_text(torch.cat([tokens, negatives])), dim=-1)
    logits = model.inverse_temperature() * image_f @ text_f.t()  # [8, 8 + 2]
    expected = clip_loss(logits, logits[:, :8].t())
    torch.testing.assert_close(with_negatives, expected)
    assert with_negatives > without  # two more wrong answers to rule out: a harder task
    assert not torch.allclose(g_with, g_without)


def test_train_feeds_each_relation_captions_swapped_twin(monkeypatch):
    """With hard_negatives, the negatives of a batch are the argument-swapped twins of its relation captions."""
    import miniclip.train as train_module

    seen = []
    real_step = train_module.train_step

    def spy(net, images, tokens, negatives=None):
        seen.append((tokens.clone(), None if negatives is None else negatives.clone()))
        return real_step(net, images, tokens, negatives)

    monkeypatch.setattr(train_module, "train_step", spy)
    result = train(TrainConfig(**{**SMALL, "hard_negatives": True, "steps": 3, "checkpoint_every": 0}),
                   eval_fn=no_eval, progress=False)
    tok = result.tokenizer
    for tokens, negatives in seen:
        captions = tok.decode(tokens)
        twins = [swap_relation(c) for c in captions if swap_relation(c) is not None]
        assert twins and negatives is not None
        assert sorted(tok.decode(negatives)) == sorted(twins)


@pytest.mark.filterwarnings("ignore:CUDA is not available")  # building the autocast context on a CPU machine
@pytest.mark.parametrize("capability, dtype", [((7, 5), torch.float16), ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)])
def test_precision_uses_bf16_only_where_the_gpu_has_bf16_units(monkeypatch, capability, dtype):
    """A T4 (7.5) reports bf16 as supported through emulation; it must train in fp16 (with a GradScaler) instead."""
    from miniclip.device import precision

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # what a T4 answers
    _, chosen = precision(torch.device("cuda"))
    assert chosen == dtype
    assert precision(torch.device("cpu"))[1] == torch.float32


def test_init_from_starts_from_another_runs_weights_and_tokenizer(tmp_path):
    base = train(TrainConfig.for_preset("shapes-tiny", steps=3, num_images=500, eval_every=0), out=tmp_path / "base",
                 progress=False, eval_fn=lambda m, t: {})
    # a learning rate too small to move anything: the fine-tuned model must equal its starting point
    tuned = train(TrainConfig.for_preset("shapes-tiny", steps=1, num_images=500, eval_every=0, seed=7, lr=1e-12,
                                         warmup_steps=0, init_from=str(tmp_path / "base")),
                  progress=False, eval_fn=lambda m, t: {})
    fresh = train(TrainConfig.for_preset("shapes-tiny", steps=1, num_images=500, eval_every=0, seed=7, lr=1e-12,
                                         warmup_steps=0), progress=False, eval_fn=lambda m, t: {})
    before, after, other = base.model.state_dict(), tuned.model.state_dict(), fresh.model.state_dict()
    assert all(torch.allclose(before[k], after[k], atol=1e-9) for k in before)
    assert not all(torch.allclose(before[k], other[k]) for k in before)
    assert tuned.tokenizer.to_json() == base.tokenizer.to_json()


def test_a_fine_tune_is_stale_when_its_start_holds_another_model_not_when_the_runs_are_copied(tmp_path):
    quiet = dict(progress=False, eval_fn=lambda m, t: {})
    base_cfg = TrainConfig.for_preset("shapes-tiny", steps=2, num_images=500, eval_every=0)
    train(base_cfg, out=tmp_path / "runs" / "base", **quiet)
    tuned = TrainConfig.for_preset("shapes-tiny", steps=1, num_images=500, eval_every=0,
                                   init_from=str(tmp_path / "runs" / "base"))
    train(tuned, out=tmp_path / "runs" / "tuned", **quiet)
    assert run_is_finished(tuned, tmp_path / "runs" / "tuned")
    # copied back and forth with new file times, the start newest (as cp without -p or a zip may do): still finished
    shutil.copytree(tmp_path / "runs", tmp_path / "copy", copy_function=shutil.copy)
    shutil.rmtree(tmp_path / "runs")
    shutil.copytree(tmp_path / "copy", tmp_path / "runs", copy_function=shutil.copy)
    os.utime(tmp_path / "runs" / "base" / "model.safetensors", (2e9, 2e9))
    assert run_is_finished(tuned, tmp_path / "runs" / "tuned")
    train(dataclasses.replace(base_cfg, seed=1), out=tmp_path / "runs" / "base", overwrite=True, **quiet)
    assert not run_is_finished(tuned, tmp_path / "runs" / "tuned")  # its start holds another model now
    shutil.rmtree(tmp_path / "runs" / "base")
    assert run_is_finished(tuned, tmp_path / "runs" / "tuned")  # without its start, a fine-tune stands on its own


def test_a_runs_folder_copied_to_another_path_keeps_its_fine_tunes_and_cache_runs(tmp_path):
    """A teacher trains the runs once and copies the folder into each student's checkout: run.json records absolute
    paths (a fine-tune's start, a cache), so the copies are recognised by what those paths hold, not by the paths."""
    from miniclip.data import shapes
    from miniclip.data.cache import save_paired

    quiet, a, b = dict(progress=False, eval_fn=lambda m, t: {}), tmp_path / "a" / "runs", tmp_path / "b" / "runs"
    save_paired(shapes.generate(300, seed=1), a / "data" / "c")
    cfgs = {"base": TrainConfig.for_preset("shapes-tiny", steps=2, num_images=300, eval_every=0),
            "tuned": TrainConfig.for_preset("shapes-tiny", steps=1, num_images=300, eval_every=0,
                                            init_from=str(a / "base")),
            "cached": TrainConfig.for_preset("shapes-tiny", steps=1, batch_size=32, num_images=0, eval_every=0,
                                             data=str(a / "data" / "c"))}
    for name, cfg in cfgs.items():
        train(cfg, out=a / name, **quiet)
    shutil.copytree(a, b)
    moved = {"base": cfgs["base"], "tuned": dataclasses.replace(cfgs["tuned"], init_from=str(b / "base")),
             "cached": dataclasses.replace(cfgs["cached"], data=str(b / "data" / "c"))}
    assert all(run_is_finished(cfg, b / name) for name, cfg in moved.items())
    # what the paths point to still counts: another cache there, or another start, makes the run stale
    shutil.rmtree(b / "data" / "c")
    save_paired(shapes.generate(300, seed=2), b / "data" / "c")
    assert not run_is_finished(moved["cached"], b / "cached")
    train(dataclasses.replace(cfgs["base"], seed=1), out=b / "base", overwrite=True, **quiet)
    assert not run_is_finished(moved["tuned"], b / "tuned")
    assert run_is_finished(cfgs["tuned"], a / "tuned") and run_is_finished(cfgs["cached"], a / "cached")


def test_init_from_refuses_a_run_of_another_shape(tmp_path):
    train(TrainConfig.for_preset("shapes-tiny", steps=1, num_images=500, eval_every=0), out=tmp_path / "base",
          progress=False, eval_fn=lambda m, t: {})
    cfg = TrainConfig.for_preset("shapes-tiny", steps=1, num_images=500, init_from=str(tmp_path / "base"),
                                 model_overrides={"vision_layers": 3})
    with pytest.raises(ValueError, match=r"--init-from .*vision_layers"):
        train(cfg, progress=False, eval_fn=lambda m, t: {})


def test_init_from_a_damaged_run_names_the_flag(tmp_path):
    base = tmp_path / "base"
    train(TrainConfig(**{**SMALL, "steps": 1}), out=base, eval_fn=no_eval, progress=False)
    (base / "model.safetensors").write_bytes(b"\xff\xfe half a file")
    cfg = TrainConfig(**{**SMALL, "steps": 1, "init_from": str(base)})
    with pytest.raises(ValueError, match=r"^--init-from .*model.safetensors"):
        train(cfg, eval_fn=no_eval, progress=False)
    (base / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"^--init-from "):
        train(cfg, eval_fn=no_eval, progress=False)


def test_every_flag_of_miniclip_train_reaches_the_config():
    """cli builds train's overrides from the flags whose names are TrainConfig fields: a flag that is not (a renamed
    field) would be dropped without a word, so every flag but the run folder's own must name one."""
    from miniclip.cli import build_parser

    subcommands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    flags = {a.dest for a in subcommands.choices["train"]._actions} - {"help", "out", "resume", "overwrite"}
    assert flags and flags <= {f.name for f in dataclasses.fields(TrainConfig)}


def test_a_fine_tune_keeps_its_bases_vocabulary_and_resumes(tmp_path):
    """A base with a larger token table than the preset's (model_overrides) is fine-tuned with that table, and the
    fine-tune resumes with it (it used to fail with torch's size mismatch)."""
    quiet = dict(progress=False, eval_fn=lambda m, t: {})
    base = train(TrainConfig.for_preset("shapes-tiny", steps=2, num_images=500, eval_every=0,
                                        model_overrides={"vocab_size": 1024}), out=tmp_path / "base", **quiet)
    assert base.model.config.vocab_size == 1024 > base.tokenizer.vocab_size
    tuned_cfg = TrainConfig.for_preset("shapes-tiny", steps=2, num_images=500, eval_every=0, lr=1e-12,
                                       warmup_steps=0, init_from=str(tmp_path / "base"))
    tuned = train(tuned_cfg, out=tmp_path / "tuned", **quiet)
    assert tuned.model.config.vocab_size == 1024
    before, after = base.model.state_dict(), tuned.model.state_dict()
    assert all(torch.allclose(before[k], after[k], atol=1e-9) for k in before)
    with pytest.warns(UserWarning, match="--steps 3"):  # a longer schedule than the run's: said, and allowed
        resumed = train(dataclasses.replace(tuned_cfg, steps=3), out=tmp_path / "tuned", resume=True, **quiet)
    assert resumed.model.config.vocab_size == 1024 and resumed.history[-1]["step"] == 3
