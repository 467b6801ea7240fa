import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from miniclip import CLIPConfig, MiniCLIP, Tokenizer
from miniclip.data import CLIP_MEAN, CLIP_STD, PairedData
from miniclip.encode import encode_images, encode_texts, prepare_images
from miniclip.evaluate import contrastive_loss, evaluate_retrieval, evaluate_suite, retrieval_metrics
from miniclip.probes.linear import few_shot_curve, fit_logistic_regression, k_shot_indices, linear_probe

KEYS = ["i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10"]


# ---------------------------------------------------------------- fixtures


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def tok():
    words = ["a red circle", "a blue star", "two green squares", "a photo of a yellow heart", "a purple cross"]
    return Tokenizer.train(words * 10, vocab_size=300, context_length=32)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return MiniCLIP(CLIPConfig.preset("shapes-tiny")).eval()


def normalise(images_uint8):
    """The reference normalisation, written out: uint8 [N, S, S, 3] -> float [N, 3, S, S]."""
    x = torch.from_numpy(images_uint8).permute(0, 3, 1, 2).float() / 255
    return (x - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)


class IdStub(nn.Module):
    """A model that knows the answer: image i (all pixels = i) and caption "caption i" map to the same unit vector."""

    def __init__(self, dim=16):
        super().__init__()
        self.config = SimpleNamespace(image_size=8, embed_dim=dim)
        self.dummy = nn.Parameter(torch.zeros(1))

    def encode_image(self, x):  # undo the normalisation of channel 0 to read the pixel value
        value = ((x[:, 0] * CLIP_STD[0] + CLIP_MEAN[0]) * 255).mean(dim=(1, 2)).round().long()
        return F.one_hot(value, self.config.embed_dim).float() + self.dummy

    def encode_text(self, tokens):
        return F.one_hot(tokens[:, 0], self.config.embed_dim).float()

    def scale(self):
        return torch.tensor(100.0)


class IdTokenizer:
    def encode(self, texts):
        return torch.tensor([[int(t.split()[-1])] for t in texts])


# ---------------------------------------------------------------- encoding


def test_prepare_images_uint8_matches_reference_and_resizes():
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    torch.testing.assert_close(prepare_images(imgs, 16), normalise(imgs))
    up = prepare_images(imgs, 32)
    assert up.shape == (3, 3, 32, 32)
    torch.testing.assert_close(up, F.interpolate(normalise(imgs), size=32, mode="bilinear", align_corners=False))
    # a float tensor is taken as already normalised
    torch.testing.assert_close(prepare_images(normalise(imgs), 16), normalise(imgs))
    with pytest.raises(ValueError):
        prepare_images(normalise(imgs).permute(0, 2, 3, 1), 16)


def test_encode_images_uint8_float_memmap_and_batching(model, tmp_path):
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, (7, 32, 32, 3), dtype=np.uint8)
    model.train()
    f = encode_images(model, imgs, batch_size=3)
    assert model.training  # the previous mode is restored
    model.eval()
    assert f.shape == (7, model.config.embed_dim)
    torch.testing.assert_close(f.norm(dim=1), torch.ones(7))
    torch.testing.assert_close(f, encode_images(model, normalise(imgs), batch_size=256))
    with torch.no_grad():
        ref = F.normalize(model.encode_image(normalise(imgs)), dim=-1)
    torch.testing.assert_close(f, ref, atol=1e-5, rtol=1e-5)
    # a read-only memmap (the cache's format) works without warnings
    mm = np.lib.format.open_memmap(tmp_path / "imgs.npy", mode="w+", dtype=np.uint8, shape=imgs.shape)
    mm[:] = imgs
    mm.flush()
    ro = np.load(tmp_path / "imgs.npy", mmap_mode="r")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        torch.testing.assert_close(encode_images(model, ro, batch_size=4), f)
    # smaller images are resized to the model's 32 px
    assert encode_images(model, imgs[:, ::2, ::2]).shape == (7, model.config.embed_dim)


def test_encode_texts(model, tok):
    texts = ["a red circle", "a blue star", "two green squares"]
    f = encode_texts(model, tok, texts, batch_size=2)
    assert f.shape == (3, model.config.embed_dim)
    torch.testing.assert_close(f.norm(dim=1), torch.ones(3))
    with torch.no_grad():
        torch.testing.assert_close(f, F.normalize(model.encode_text(tok.encode(texts)), dim=-1), atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- retrieval


def test_retrieval_perfect_and_reversed():
    m = retrieval_metrics(torch.eye(12), torch.arange(12))
    assert list(m) == KEYS and all(v == 100.0 for v in m.values())
    # own pair scored lowest: rank 11 of 12, so even recall@10 misses
    m = retrieval_metrics(-torch.eye(12), np.arange(12))
    assert all(v == 0.0 for v in m.values())


def test_retrieval_ties_are_deterministic():
    # all scores equal: ties go to the lower index, so item i has rank i
    m = retrieval_metrics(torch.zeros(20, 20), torch.arange(20))
    assert m == {"i2t_r1": 5.0, "i2t_r5": 25.0, "i2t_r10": 50.0, "t2i_r1": 5.0, "t2i_r5": 25.0, "t2i_r10": 50.0}
    assert retrieval_metrics(torch.zeros(20, 20), torch.arange(20)) == m


def test_retrieval_any_caption_counts_for_image_to_text():
    # image 0 owns captions 0-4, image 1 owns 5-9; only image 0's third caption (index 2) beats image 1's captions
    sim = torch.tensor([
        [0.0, 0.1, 0.9, 0.0, 0.2, 0.5, 0.5, 0.5, 0.5, 0.5],
        [0.3, 0.3, 0.3, 0.3, 0.3, 0.8, 0.1, 0.1, 0.1, 0.1],
    ])
    caption_image = torch.tensor([0] * 5 + [1] * 5)
    m = retrieval_metrics(sim, caption_image, ks=(1, 2))
    assert m["i2t_r1"] == 100.0  # image 0 via caption 2; image 1 via caption 5
    # text -> image: caption 2 (0.9 vs 0.3), 5 (0.8 vs 0.5) hit; 0, 1, 3, 4 score their image below image 1
    # (0.0/0.1/0.0/0.2 < 0.3); 6-9 score image 1 (0.1) below image 0 (0.5). 2 of 10 hit at k=1, all at k=2.
    assert m["t2i_r1"] == 20.0 and m["t2i_r2"] == 100.0


def test_retrieval_skips_images_without_captions_and_validates():
    m = retrieval_metrics(torch.eye(3)[:, [0, 2]], torch.tensor([0, 2]), ks=(1,))  # image 1 has no caption
    assert m == {"i2t_r1": 100.0, "t2i_r1": 100.0}
    sim = torch.eye(3)
    with pytest.raises(ValueError):
        retrieval_metrics(sim, torch.tensor([0, 5, 1]))
    with pytest.raises(ValueError):
        retrieval_metrics(sim, torch.tensor([0, 1]))


def test_retrieval_matches_a_sort_based_reference_and_chunking():
    g = torch.Generator().manual_seed(0)
    sim = torch.randn(9, 25, generator=g)
    caption_image = torch.randint(0, 9, (25,), generator=g)
    caption_image[:9] = torch.arange(9)  # every image has a caption
    order_i2t = sim.argsort(dim=1, descending=True)  # continuous scores: no ties
    order_t2i = sim.t().argsort(dim=1, descending=True)
    for k in (1, 5, 10):
        i2t = np.mean([np.isin(order_i2t[i, :k].numpy(), np.flatnonzero(caption_image.numpy() == i)).any()
                       for i in range(9)])
        t2i = np.mean([int(caption_image[c]) in order_t2i[c, :k].tolist() for c in range(25)])
        m = retrieval_metrics(sim, caption_image, chunk=4)
        assert m[f"i2t_r{k}"] == pytest.approx(100 * i2t) and m[f"t2i_r{k}"] == pytest.approx(100 * t2i)
    assert retrieval_metrics(sim, caption_image, chunk=4) == retrieval_metrics(sim, caption_image, chunk=1000)


def test_evaluate_retrieval_with_a_model_that_knows_the_answer():
    images = np.repeat(np.arange(6, dtype=np.uint8), 8 * 8 * 3).reshape(6, 8, 8, 3)  # image i: every pixel = i
    caption_image = np.repeat(np.arange(6), 2)
    data = PairedData(images, [f"caption {i}" for i in caption_image], caption_image)
    m = evaluate_retrieval(IdStub(), IdTokenizer(), data, batch_size=4, device="cpu")
    assert m == {**{k: 100.0 for k in KEYS}, "num_images": 6, "num_captions": 12}


def test_evaluate_retrieval_real_model(model, tok):
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    captions = ["a red circle", "a blue star", "two green squares", "a purple cross", "a yellow heart", "a red star"]
    data = PairedData(images, captions, np.array([0, 1, 2, 3, 4, 0]))
    m = evaluate_retrieval(model, tok, data, batch_size=2)
    assert m["num_images"] == 5 and m["num_captions"] == 6
    assert all(0.0 <= m[k] <= 100.0 for k in KEYS)
    sim = encode_images(model, images) @ encode_texts(model, tok, captions).t()
    assert {k: m[k] for k in KEYS} == retrieval_metrics(sim, data.caption_image)


# ---------------------------------------------------------------- linear probes


def clusters(n_per_class, k=4, d=16, spread=0.3, seed=0):
    """Gaussian clusters around k random unit centres, two independent draws (train and test).

    Returns (x [k * n, d], y [k * n], x_test, y_test, centres [k, d]).
    """
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(k, d, generator=g), dim=1)
    labels = torch.arange(k).repeat_interleave(n_per_class)
    x = centres[labels] + spread * torch.randn(len(labels), d, generator=g) / d**0.5
    x_test = centres[labels] + spread * torch.randn(len(labels), d, generator=g) / d**0.5
    return x, labels, x_test, labels.clone(), centres


def test_probe_separable_clusters_near_perfect():
    x, y, xt, yt, _ = clusters(40, seed=0)
    assert linear_probe(x, y, xt, yt) >= 0.97


def test_probe_random_labels_is_near_chance():
    g = torch.Generator().manual_seed(1)
    x, xt = torch.randn(400, 16, generator=g), torch.randn(400, 16, generator=g)
    y, yt = torch.randint(0, 4, (400,), generator=g), torch.randint(0, 4, (400,), generator=g)
    assert 0.15 <= linear_probe(x, y, xt, yt) <= 0.35


def test_probe_solves_the_sklearn_objective_deterministically():
    x, y, _, _, _ = clusters(10, spread=2.0, seed=3)  # overlapping clusters: a finite optimum
    C = 0.316
    W, b = fit_logistic_regression(x, y, C=C)
    W2, b2 = fit_logistic_regression(x, y, C=C)
    assert torch.equal(W, W2) and torch.equal(b, b2)
    # stationarity of sum_i CE + ||W||^2 / (2C): its gradient vanishes at the solution
    W, b = W.clone().requires_grad_(True), b.clone().requires_grad_(True)
    loss = F.cross_entropy(x.double() @ W.t() + b, y, reduction="sum") + W.pow(2).sum() / (2 * C)
    gW, gb = torch.autograd.grad(loss, (W, b))
    assert gW.abs().max() < 1e-5 and gb.abs().max() < 1e-5
    # a smaller C (a stronger penalty) shrinks the weights
    assert fit_logistic_regression(x, y, C=0.01)[0].norm() < W.norm()


def test_probe_initialised_from_zero_shot_weights():
    x, y, xt, yt, centres = clusters(30, k=5, spread=1.5, seed=4)
    x, xt = F.normalize(x, dim=1), F.normalize(xt, dim=1)
    classifier = centres.t()  # [D, K], unit columns: a "zero-shot" classifier
    zeroshot_acc = (xt @ classifier).argmax(1).eq(yt).double().mean().item()
    idx = k_shot_indices(y, 1, seed=0)
    # a very strong pull towards the init reproduces the zero-shot classifier (the bias may only shift it a little)
    pulled = linear_probe(x[idx], y[idx], xt, yt, C=1e-6, init=classifier, init_inverse_temperature=100.0)
    assert abs(pulled - zeroshot_acc) <= 0.02
    # the same strong penalty towards 0 (the plain probe) is much worse than zero-shot
    plain = linear_probe(x[idx], y[idx], xt, yt, C=1e-6)
    assert plain < zeroshot_acc - 0.2
    with pytest.raises(ValueError):
        linear_probe(x, y, x, y, init=classifier[:, :3], num_classes=5)


def test_k_shot_indices_counts_and_seeds():
    y = torch.tensor([0] * 10 + [1] * 7 + [2] * 5)
    idx = k_shot_indices(y, 4, seed=0)
    assert idx.dtype == torch.long and len(idx) == 12 and len(set(idx.tolist())) == 12
    assert torch.bincount(y[idx]).tolist() == [4, 4, 4]
    assert torch.equal(idx, k_shot_indices(y.numpy(), 4, seed=0))
    assert not torch.equal(idx, k_shot_indices(y, 4, seed=1))
    assert torch.bincount(y[k_shot_indices(y, 5, seed=2)]).tolist() == [5, 5, 5]
    with pytest.raises(ValueError, match="fewer than k"):
        k_shot_indices(y, 6, seed=0)


def test_few_shot_curve():
    x, y, xt, yt, _ = clusters(20, k=3, spread=1.0, seed=5)
    curve = few_shot_curve(x, y, xt, yt, ks=(1, 4, 16), seeds=(0, 1, 2))
    assert list(curve) == [1, 4, 16]
    for mean, std in curve.values():
        assert 0.0 <= mean <= 1.0 and std >= 0.0
    assert curve == few_shot_curve(x, y, xt, yt, ks=(1, 4, 16), seeds=(0, 1, 2))
    assert curve[16][0] >= curve[1][0] - 0.05
    assert few_shot_curve(x, y, xt, yt, ks=(2,), seeds=(0,))[2][1] == 0.0


# ---------------------------------------------------------------- the suite training runs


def test_contrastive_loss():
    f = torch.eye(8)
    # image i's first caption is caption i; captions 8-15 are second captions, ignored
    caption_image = torch.cat([torch.arange(8), torch.arange(8)])
    texts = torch.cat([f, torch.ones(8, 8) / 8**0.5])
    assert contrastive_loss(f, texts, caption_image, inverse_temperature=100.0) < 1e-6  # perfect pairs, sharp logits
    same = F.normalize(torch.ones(8, 4), dim=1)
    assert contrastive_loss(same, same, torch.arange(8), inverse_temperature=10.0, batch_size=4) == pytest.approx(np.log(4))


def test_evaluate_suite_on_the_shapes_world(model):
    pytest.importorskip("miniclip.data.shapes")
    from miniclip.data import shapes

    tok = Tokenizer.train(shapes.generate(60, seed=1).captions + shapes.class_names(), vocab_size=300,
                          context_length=32)
    m = evaluate_suite(model, tok, "shapes", num_images=24, zeroshot_per_class=1, batch_size=16)
    assert set(m) == set(KEYS) | {"loss", "num_images", "num_captions", "zeroshot_top1", "zeroshot_top5"}
    assert m["num_images"] == 24 and m["num_captions"] >= 24 and np.isfinite(m["loss"])
    assert 0.0 <= m["zeroshot_top1"] <= m["zeroshot_top5"] <= 1.0
    data = shapes.generate(10, seed=2)
    m2 = evaluate_suite(model, tok, data, batch_size=16)  # a PairedData: retrieval and loss only
    assert m2["num_images"] == 10 and "zeroshot_top1" not in m2
