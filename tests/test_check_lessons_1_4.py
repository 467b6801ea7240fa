"""The checkers of lessons 1-4 accept the solution, reject the stub and recognise the usual mistakes;
miniclip.course.main_run defines the main run in one place; the lesson sizes; the diagrams of lessons 1-4."""
import dataclasses
import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from miniclip import CLIPConfig, MiniCLIP  # noqa: E402
from miniclip.config import TrainConfig  # noqa: E402
from miniclip.course import check_lessons_1_4 as check  # noqa: E402
from miniclip.course import diagrams  # noqa: E402
from miniclip.course.lesson import pick_lesson, start_lesson  # noqa: E402
from miniclip.course.main_run import (coco_cache_dir, coco_pairs, main_run_config, main_run_dir,  # noqa: E402
                                       prepare_coco, sample_pairs)
from miniclip.data import shapes  # noqa: E402
from miniclip.tokenizer import Tokenizer  # noqa: E402
from miniclip.train import lr_at  # noqa: E402


def stub(*args):
    raise NotImplementedError("Exercise: write your solution here")


def assert_rejects(result, hint_part):
    assert not result, result
    assert hint_part in result.hint, result.hint


# ---- lesson 1: a caption's row of ids -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.train(shapes.generate(300, seed=5).captions, vocab_size=300, context_length=16)


def to_context(ids, context_length, start_id, end_id, pad_id):
    row = [start_id] + list(ids)[: context_length - 2] + [end_id]
    return row + [pad_id] * (context_length - len(row))


def test_to_context(tokenizer):
    assert check.check_to_context(to_context, tokenizer)
    text = "a red circle to the left of a blue star and a green heart above a yellow cross"
    assert to_context(tokenizer.bpe_ids(text), 16, 2, 3, 0) == tokenizer.encode(text)[0].tolist()
    assert_rejects(check.check_to_context(stub, tokenizer), "not implemented")

    def cut_after_end(ids, n, s, e, p):
        row = ([s] + list(ids) + [e])[:n]
        return row + [p] * (n - len(row))

    assert_rejects(check.check_to_context(cut_after_end, tokenizer), "loses its end token")

    def unpadded(ids, n, s, e, p):
        return [s] + list(ids)[: n - 2] + [e]

    assert_rejects(check.check_to_context(unpadded, tokenizer), "shape")


# ---- lesson 2: token counts, block parameters, the causal mask -------------------------------------------------


def test_block_parameters():
    def right(width, mlp_ratio):
        return (4 + 2 * mlp_ratio) * width**2 + (9 + mlp_ratio) * width

    assert check.check_block_parameters(right)
    assert_rejects(check.check_block_parameters(stub), "not implemented")
    assert_rejects(check.check_block_parameters(lambda w, r: (4 + 2 * r) * w * w), "weight matrices only")
    assert_rejects(check.check_block_parameters(lambda w, r: (4 + 2 * r) * w * w + (5 + r) * w), "LayerNorm")
    assert_rejects(check.check_block_parameters(lambda w, r: 12 * w * w + 13 * w), "mlp_ratio")


def test_causal_mask():
    assert check.check_causal_mask(lambda t: torch.tril(torch.ones(t, t, dtype=torch.bool)))
    assert check.check_causal_mask(lambda t: torch.arange(t)[None, :] <= torch.arange(t)[:, None])
    assert_rejects(check.check_causal_mask(stub), "not implemented")
    assert_rejects(check.check_causal_mask(lambda t: torch.ones(t, t).triu().bool()), "transposed")
    assert_rejects(check.check_causal_mask(lambda t: torch.ones(t, t).tril(-1).bool()), "itself")


# ---- lesson 3: the existing similarity and loss checkers also report a stub ------------------------------------


def test_similarity_and_loss_stubs():
    assert_rejects(check.check_similarity(stub), "not implemented")
    assert_rejects(check.check_clip_loss(stub), "not implemented")


# ---- lesson 4: the learning-rate schedule and recall@k ---------------------------------------------------------


def test_lr_schedule():
    def right(step, cfg):
        if step < cfg.warmup_steps:
            return cfg.lr * (step + 1) / cfg.warmup_steps
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))

    assert check.check_lr_schedule(right)
    assert check.check_lr_schedule(lr_at)
    assert_rejects(check.check_lr_schedule(stub), "not implemented")

    def late(step, cfg):
        return cfg.lr * step / cfg.warmup_steps if step < cfg.warmup_steps else right(step, cfg)

    assert_rejects(check.check_lr_schedule(late), "one step late")

    def linear(step, cfg):
        if step < cfg.warmup_steps:
            return right(step, cfg)
        return cfg.lr * (1 - (step - cfg.warmup_steps) / (cfg.steps - cfg.warmup_steps))

    assert_rejects(check.check_lr_schedule(linear), "linear")

    def no_warmup(step, cfg):
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, step / cfg.steps)))

    assert_rejects(check.check_lr_schedule(no_warmup), "no warmup")


def test_weight_decay():
    def right(name, p):
        return p.ndim >= 2 and "embedding" not in name

    assert check.check_weight_decay(right)
    assert_rejects(check.check_weight_decay(stub), "not implemented")
    assert_rejects(check.check_weight_decay(lambda n, p: True), "every parameter decays")
    assert_rejects(check.check_weight_decay(lambda n, p: p.ndim >= 2), "embedding tables")
    assert_rejects(check.check_weight_decay(lambda n, p: not n.endswith("bias")), "LayerNorm")
    no_kernels = check.check_weight_decay(lambda n, p: p.ndim >= 2 and "embedding" not in n and "conv" not in n)
    assert_rejects(no_kernels, "max diff")  # an unlisted mistake: still WRONG, with the size of the difference


# ---- miniclip.course.lesson and main_run ---------------------------------------------------------------------------


def test_pick_lesson(monkeypatch):
    monkeypatch.setenv("MINICLIP_LESSON", "laptop")
    assert pick_lesson().name == "laptop" and pick_lesson("smoke").smoke  # the argument wins over the variable
    monkeypatch.setenv("MINICLIP_LESSON", "huge")
    with pytest.raises(ValueError, match="MINICLIP_LESSON"):
        pick_lesson()
    monkeypatch.delenv("MINICLIP_LESSON")
    monkeypatch.setenv("MINICLIP_SMOKE", "1")
    assert pick_lesson().smoke


def test_start_lesson_seeds_every_generator(capsys):
    first = start_lesson(seed=3, name="smoke")
    a = torch.rand(3)
    start_lesson(seed=3, name="smoke")
    assert torch.equal(a, torch.rand(3)) and first.name == "smoke"
    assert "miniclip lesson: smoke" in capsys.readouterr().out


def test_main_run_config_is_the_lesson_s_recipe(tmp_path):
    smoke = pick_lesson("smoke")
    assert main_run_config(smoke) == TrainConfig.for_preset("shapes-tiny", data="shapes", steps=smoke.steps,
                                                        num_images=smoke.num_images)
    assert main_run_dir(smoke) == smoke.runs_dir / "main"
    gpu = dataclasses.replace(pick_lesson("gpu"), runs_dir=tmp_path)
    cfg = main_run_config(gpu)
    assert cfg.preset == "coco-small" and cfg.steps == gpu.steps and cfg.num_images == gpu.num_images
    assert cfg.data == str(coco_cache_dir(gpu, "train")) and str(tmp_path) in cfg.data


def test_prepare_coco_from_local_parquet(tmp_path, coco_parquet):
    gpu = dataclasses.replace(pick_lesson("gpu"), runs_dir=tmp_path, num_images=3)
    source = dict(hf_dataset="parquet", hf_data_files=[str(coco_parquet["per_image"])])
    out = prepare_coco(gpu, "train", workers=1, **source)
    assert out == coco_cache_dir(gpu, "train") and (out / "manifest.json").is_file()
    data = coco_pairs(gpu, "train", **source)  # found, not built again
    assert data.num_images == 3 and data.images.shape[1:] == (64, 64, 3)
    assert data.captions_of(0) == coco_parquet["captions"][0]
    # once the main cache exists, a smaller sample is read from it instead of being downloaded again
    few = sample_pairs(gpu, 2)
    assert few.num_images == 2 and few.captions == data.captions[: len(few.captions)]


def test_sample_pairs_shapes():
    data = sample_pairs(pick_lesson("smoke"), 10)
    again = sample_pairs(pick_lesson("smoke"), 10)
    assert data.num_images == 10 and data.images.shape[1:] == (32, 32, 3)
    assert (data.images == again.images).all() and data.captions == again.captions


def test_num_image_tokens():
    def right(image_size, patch_size):
        return (image_size // patch_size) ** 2 + 1

    assert check.check_num_image_tokens(right)
    assert_rejects(check.check_num_image_tokens(stub), "not implemented")
    assert_rejects(check.check_num_image_tokens(lambda s, p: (s // p) ** 2), "class token")
    # the reference is what the model really builds
    cfg = CLIPConfig.preset("shapes-tiny")
    v = MiniCLIP(cfg).visual
    x = v.conv1(v.stem(torch.zeros(1, 3, cfg.image_size, cfg.image_size))).flatten(2)
    assert x.shape[-1] + 1 == right(cfg.image_size, cfg.patch_size) == v.positional_embedding.shape[0]


def test_diagrams(tokenizer):
    data = shapes.generate(4, seed=1, image_size=64)
    for patch in (8, 16):  # 65 and 17 tokens
        plt.close(diagrams.plot_patch_grid(data.images[0], patch))
    model = MiniCLIP(CLIPConfig.preset("shapes-tiny"))
    groups = diagrams.parameter_counts(model)
    assert sum(groups.values()) == model.num_parameters()
    assert list(groups)[0] == "image: conv stem" and list(groups)[-1] == "temperature"
    plt.close(diagrams.plot_parameter_counts(model))
    captions = ["a red circle", "two blue stars above a green heart"]
    tokens = tokenizer.encode(captions)
    x = model.text.token_embedding(tokens) + model.text.positional_embedding[: tokens.shape[1]]
    block = model.text.blocks[0]
    _, w = block.attn(block.ln_1(x), return_weights=True)  # [B, heads, T, T], as notebook 02 draws them
    pieces = diagrams.token_pieces(tokenizer, captions[0])
    assert pieces[0] == "<start>" and "<end>" in pieces and len(pieces) == tokenizer.context_length
    plt.close(diagrams.plot_causal_attention(w[0].mean(0)[:6, :6], pieces[:6]))
    plt.close(diagrams.plot_end_token(tokenizer, captions))
    logits = torch.randn(4, 4)
    plt.close(diagrams.plot_rows_and_columns(logits, ["a", "b", "c", "d"]))
    plt.close(diagrams.plot_softmax_bars(logits[0], ["a", "b", "c", "d"], [1.0, 0.07]))
    plt.close(diagrams.plot_softmax_bars(logits[0], ["a", "b", "c", "d"], 0.07))
