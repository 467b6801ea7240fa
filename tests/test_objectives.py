"""The predictive objectives of notebook 09 (miniclip.course.objectives, objective_runs) and the maps and the sweep."""
import json

import numpy as np
import pytest
import torch

from miniclip.config import CLIPConfig, TrainConfig
from miniclip.course.maps import class_token_attention, occlusion_map
from miniclip.course.objective_runs import objective_is_finished, pairs_to_reach, train_objective
from miniclip.course.objectives import (BagOfWords, Captioner, bow_targets, caption_words, word_vocabulary)
from miniclip.course.scaling import at_width, fit_power_law, frontier, training_flops_per_pair
from miniclip.tokenizer import Tokenizer

CAPTIONS = ["a red circle", "a photo of a blue star.", "two red circles", "a red circle and a blue star"]


def tiny_config(**overrides):
    return CLIPConfig.preset("shapes-tiny", vision_width=32, text_width=32, embed_dim=32, **overrides)


def test_bow_target_is_the_captions_word_set():
    vocab = word_vocabulary(CAPTIONS)
    assert caption_words("A photo of a blue star.") == ["a", "photo", "of", "a", "blue", "star"]
    targets = bow_targets(CAPTIONS, vocab)
    row = dict(zip(vocab, targets[1].tolist()))
    assert {w for w, v in row.items() if v > 0} == {"a", "photo", "of", "blue", "star"}  # "a" twice counts once
    assert row["a"] == pytest.approx(1 / 5)
    torch.testing.assert_close(targets.sum(dim=1), torch.ones(len(CAPTIONS)))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        bow_targets(["a green heart"], vocab)


def test_bow_class_scores_sum_the_class_words():
    torch.manual_seed(0)
    vocab = word_vocabulary(CAPTIONS)
    model = BagOfWords(tiny_config(), vocab).eval()
    images = torch.randn(3, 3, 32, 32)
    log_p = model(images)
    scores = model.class_scores(images, [["red", "circle"], ["blue", "star"]])
    expected = log_p[:, vocab.index("red")] + log_p[:, vocab.index("circle")]
    torch.testing.assert_close(scores[:, 0], expected)
    with pytest.raises(ValueError, match="not in the bag-of-words vocabulary"):
        model.class_scores(images, [["green", "heart"]])


def test_captioner_loss_falls_on_a_tiny_batch_and_prefers_the_learned_caption():
    torch.manual_seed(0)
    tok = Tokenizer.train(CAPTIONS * 20, vocab_size=300, context_length=16)
    cfg = tiny_config(context_length=16, vocab_size=tok.vocab_size, eot_token_id=tok.end_id)
    model = Captioner(cfg, pad_id=tok.pad_id)
    images = torch.randn(2, 3, 32, 32)
    tokens = tok.encode(["a red circle", "a blue star"])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = model.loss(images, tokens).item()
    for _ in range(60):
        opt.zero_grad()
        loss = model.loss(images, tokens)
        loss.backward()
        opt.step()
    assert loss.item() < 0.3 * first
    model.eval()
    scores = model.class_scores(images, tokens)  # [2 images, 2 captions]
    assert scores.shape == (2, 2) and (scores <= 0).all()
    assert scores.argmax(dim=1).tolist() == [0, 1]  # each image's own caption is the most likely


def test_captioner_never_looks_ahead():
    """Changing a later token must not change the log-likelihood of the earlier ones (a causal decoder)."""
    torch.manual_seed(0)
    tok = Tokenizer.train(CAPTIONS * 20, vocab_size=300, context_length=16)
    cfg = tiny_config(context_length=16, vocab_size=tok.vocab_size, eot_token_id=tok.end_id)
    model = Captioner(cfg, pad_id=tok.pad_id).eval()
    features = torch.randn(1, cfg.embed_dim)
    a, b = tok.encode(["a red circle", "a red star"])[:, :6], None
    b = a.clone()
    b[0, 3] = tok.encode("star")[0, 1]  # the third word's token differs
    la, lb = model.token_log_likelihood(features, a), model.token_log_likelihood(features, b)
    torch.testing.assert_close(la[:, :2], lb[:, :2])  # predictions of tokens 1 and 2 (before the change) agree
    assert not torch.allclose(la[:, 2], lb[:, 2])


def test_occlusion_map_is_zero_where_the_model_does_not_look():
    def encode_top_left(images):  # a "model" that reads only the top-left 8 x 8 patch
        return images[:, :, :8, :8].flatten(1) + 1.0

    images = torch.randn(2, 3, 32, 32)
    text = torch.randn(3 * 64)
    drops = occlusion_map(encode_top_left, images, text, patch=8)
    assert drops.shape == (2, 4, 4)
    assert drops[:, 0, 0].abs().min() > 0
    mask = torch.ones(4, 4, dtype=torch.bool)
    mask[0, 0] = False
    assert drops[:, mask].abs().max() == 0
    with pytest.raises(ValueError, match="must tile"):
        occlusion_map(encode_top_left, images, text, patch=8, stride=5)


def test_class_token_attention_is_the_towers_attention():
    torch.manual_seed(0)
    from miniclip.model import MiniCLIP
    model = MiniCLIP(tiny_config()).eval()
    images = torch.randn(2, 3, 32, 32)
    maps = class_token_attention(model.visual, images)
    assert maps.shape == (2, 2, 4, 4)  # [B, layers, grid, grid]
    assert (maps >= 0).all() and (maps.sum(dim=(2, 3)) < 1).all()  # the class token keeps some for itself
    # the written-out pass gives the tower's own output: same blocks, same order (checked through the last block)
    x = model.visual.ln_pre(torch.cat([model.visual.class_embedding.expand(2, 1, -1),
                                       model.visual.conv1(model.visual.stem(images)).flatten(2).transpose(1, 2)], 1)
                            + model.visual.positional_embedding)
    for block in model.visual.blocks:
        x = block(x)
    torch.testing.assert_close(model.visual.ln_post(x[:, 0]) @ model.visual.proj, model.visual(images))


def test_flops_grow_with_width_and_the_power_law_fits_a_line():
    cfg = TrainConfig.for_preset("shapes-tiny")
    small, large = training_flops_per_pair(at_width(cfg, 32)), training_flops_per_pair(at_width(cfg, 128))
    assert 0 < small < large
    compute = np.array([1e9, 1e10, 1e11])
    slope, intercept = fit_power_law(compute, 0.5 * compute ** -0.2)
    assert slope == pytest.approx(-0.2) and intercept == pytest.approx(np.log10(0.5))
    assert frontier([(1, 0.5), (2, 0.6), (3, 0.4)]) == [(1, 0.5), (3, 0.4)]
    assert pairs_to_reach({"pairs_seen": [10, 20, 30], "accuracy": [0.1, 0.6, 0.5]}, 0.5) == 20
    assert pairs_to_reach({"pairs_seen": [10], "accuracy": [0.1]}, 0.5) is None


@pytest.mark.parametrize("kind", ["contrastive", "bag of words", "captioner"])
def test_runs_train_and_reload(kind, tmp_path):
    cfg = TrainConfig.for_preset("shapes-tiny", steps=4, batch_size=16, num_images=200, warmup_steps=2, **{
        "model_overrides": {"vision_width": 32, "text_width": 32, "embed_dim": 32}})
    assert not objective_is_finished(kind, cfg, tmp_path / "run", eval_every=2, per_class=1)
    run = train_objective(kind, cfg, tmp_path / "run", eval_every=2, per_class=1, progress=False)
    assert objective_is_finished(kind, cfg, tmp_path / "run", eval_every=2, per_class=1)
    assert not objective_is_finished(kind, cfg, tmp_path / "run", eval_every=3, per_class=1)  # another curve
    assert run.curve["pairs_seen"] == [32, 64]
    assert all(0 <= a <= 1 for a in run.curve["accuracy"])
    again = train_objective(kind, cfg, tmp_path / "run", eval_every=2, per_class=1, progress=False)
    assert again.curve == run.curve
    for p, q in zip(run.model.parameters(), again.model.parameters()):
        torch.testing.assert_close(p, q)


def test_a_contrastive_curve_scored_on_another_zero_shot_set_is_trained_again(tmp_path):
    cfg = TrainConfig.for_preset("shapes-tiny", steps=4, batch_size=16, num_images=200, warmup_steps=2, **{
        "model_overrides": {"vision_width": 32, "text_width": 32, "embed_dim": 32}})
    out = tmp_path / "run"
    train_objective("contrastive", cfg, out, eval_every=2, per_class=1, progress=False)
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    assert objective_is_finished("contrastive", cfg, out, eval_every=2, per_class=1)
    assert not objective_is_finished("contrastive", cfg, out, eval_every=2, per_class=2)  # same recipe, other set
    train_objective("contrastive", cfg, out, eval_every=2, per_class=1, progress=False)
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp  # the same set: only loaded
    train_objective("contrastive", cfg, out, eval_every=2, per_class=2, progress=False)
    assert (out / "model.safetensors").stat().st_mtime_ns > stamp  # another set: trained again, scored on it
    assert objective_is_finished("contrastive", cfg, out, eval_every=2, per_class=2)
    assert json.loads((out / "run.json").read_text())["eval_per_class"] == 2  # the set is part of the recipe
