"""The checkers of lessons 1-4 accept the solution, reject the stub and recognise the usual mistakes;
and miniclip.lessons defines the main run in one place."""
import dataclasses
import math

import pytest
import torch

from miniclip.course import checkers as check
from miniclip.data import shapes
from miniclip.tokenizer import Tokenizer


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
    from miniclip.course.lessons import bpe_ids

    assert check.check_to_context(to_context, tokenizer)
    text = "a red circle to the left of a blue star and a green heart above a yellow cross"
    assert to_context(bpe_ids(tokenizer, text), 16, 2, 3, 0) == tokenizer.encode(text)[0].tolist()
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
    from miniclip.train import lr_at

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


# ---- miniclip.lessons ----------------------------------------------------------------------------------------------


def test_main_run_config_is_the_scale_s_recipe(tmp_path):
    from miniclip.course.lessons import coco_cache_dir, main_run_config, main_run_dir
    from miniclip.course.scale import pick_scale
    from miniclip.train import TrainConfig

    smoke = pick_scale("smoke")
    assert main_run_config(smoke) == TrainConfig.for_preset("shapes-tiny", data="shapes", steps=smoke.steps,
                                                        num_images=smoke.num_images)
    assert main_run_dir(smoke) == smoke.runs_dir / "main"
    gpu = dataclasses.replace(pick_scale("gpu"), runs_dir=tmp_path)
    cfg = main_run_config(gpu)
    assert cfg.preset == "coco-small" and cfg.steps == gpu.steps and cfg.num_images == gpu.num_images
    assert cfg.data == str(coco_cache_dir(gpu, "train")) and str(tmp_path) in cfg.data


def test_prepare_coco_from_local_parquet(tmp_path, coco_parquet):
    from miniclip.course.lessons import coco_cache_dir, coco_pairs, prepare_coco, sample_pairs
    from miniclip.course.scale import pick_scale

    gpu = dataclasses.replace(pick_scale("gpu"), runs_dir=tmp_path, num_images=3)
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
    from miniclip.course.lessons import sample_pairs
    from miniclip.course.scale import pick_scale

    data = sample_pairs(pick_scale("smoke"), 10)
    again = sample_pairs(pick_scale("smoke"), 10)
    assert data.num_images == 10 and data.images.shape[1:] == (32, 32, 3)
    assert (data.images == again.images).all() and data.captions == again.captions


def test_num_image_tokens():
    from miniclip import CLIPConfig, MiniCLIP

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


def test_lesson_figures(tokenizer):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from miniclip import CLIPConfig, MiniCLIP

    from miniclip.course import lessons

    data = shapes.generate(4, seed=1, image_size=64)
    for patch in (8, 16):  # 65 and 17 tokens
        plt.close(lessons.plot_patch_grid(data.images[0], patch))
    model = MiniCLIP(CLIPConfig.preset("shapes-tiny"))
    groups = lessons.parameter_groups(model)
    assert sum(groups.values()) == model.num_parameters()
    assert list(groups)[0] == "image: conv stem" and list(groups)[-1] == "temperature"
    plt.close(lessons.plot_parameter_counts(model))
    captions = ["a red circle", "two blue stars above a green heart"]
    tokens = tokenizer.encode(captions)
    x = model.text.token_embedding(tokens) + model.text.positional_embedding[: tokens.shape[1]]
    w = lessons.attention_weights(model.text.blocks[0], x)  # [B, heads, T, T]
    assert w.shape == (2, 4, 16, 16)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 16))
    assert w[0, :, 0, 1:].abs().max() == 0  # causal: the first token sees only itself
    pieces = lessons.token_pieces(tokenizer, captions[0])
    assert pieces[0] == "<start>" and "<end>" in pieces and len(pieces) == tokenizer.context_length
    plt.close(lessons.plot_causal_attention(w[0].mean(0)[:6, :6], pieces[:6]))
    plt.close(lessons.plot_end_token(tokenizer, captions))
    logits = torch.randn(4, 4)
    plt.close(lessons.plot_rows_and_columns(logits, ["a", "b", "c", "d"]))
    plt.close(lessons.plot_softmax_bars(logits[0], ["a", "b", "c", "d"], [1.0, 0.07]))
    plt.close(lessons.plot_softmax_bars(logits[0], ["a", "b", "c", "d"], 0.07))
