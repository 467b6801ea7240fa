import pickle
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from miniclip import CLIPConfig, MiniCLIP, Tokenizer
from miniclip.data import CLIP_MEAN, CLIP_STD
from miniclip.zeroshot import (
    CIFAR10_CLASSES, CIFAR10_TEMPLATES, SHAPES_TEMPLATES, SIMPLE_TEMPLATE, accuracy, evaluate_zeroshot, load_cifar10,
    zeroshot_classifier, zeroshot_logits, zeroshot_predict,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


CLASSES = ["red circle", "blue star", "green square", "yellow heart", "purple cross", "orange triangle"]


@pytest.fixture(scope="module")
def tok():
    captions = [t.format(c) for c in CLASSES for t in SHAPES_TEMPLATES]
    return Tokenizer.train(captions * 3, vocab_size=300, context_length=32)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return MiniCLIP(CLIPConfig.preset("shapes-tiny")).eval()


class ClassStub(nn.Module):
    """A model that knows the answer: an image filled with the value c and any caption naming class c share a vector."""

    def __init__(self, dim=8):
        super().__init__()
        self.config = SimpleNamespace(image_size=8, embed_dim=dim)
        self.dummy = nn.Parameter(torch.zeros(1))

    def encode_image(self, x):  # float images [B, 3, 8, 8], all pixels = class index
        return F.one_hot(x[:, 0].mean(dim=(1, 2)).round().long(), self.config.embed_dim).float() + self.dummy

    def encode_text(self, tokens):
        return F.one_hot(tokens[:, 0], self.config.embed_dim).float()

    def inverse_temperature(self):
        return torch.tensor(10.0)


class ClassTokenizer:
    def __init__(self, classnames):
        self.classnames = classnames

    def encode(self, texts):
        return torch.tensor([[next(i for i, c in enumerate(self.classnames) if c in t)] for t in texts])


def test_template_sets():
    assert len(CIFAR10_TEMPLATES) == 18 and len(set(CIFAR10_TEMPLATES)) == 18
    assert CIFAR10_TEMPLATES[:4] == ["a photo of a {}.", "a blurry photo of a {}.", "a black and white photo of a {}.",
                                     "a low contrast photo of a {}."]
    assert len(CIFAR10_CLASSES) == 10 and CIFAR10_CLASSES[0] == "airplane"
    assert 4 <= len(SHAPES_TEMPLATES) <= 8 and SIMPLE_TEMPLATE in SHAPES_TEMPLATES
    for t in CIFAR10_TEMPLATES + SHAPES_TEMPLATES:
        assert t.count("{}") == 1


def test_classifier_is_the_renormalised_template_mean(model, tok):
    templates = SHAPES_TEMPLATES[:3]
    clf = zeroshot_classifier(model, tok, CLASSES, templates)
    assert clf.shape == (model.config.embed_dim, len(CLASSES))
    torch.testing.assert_close(clf.norm(dim=0), torch.ones(len(CLASSES)))
    with torch.no_grad():
        for k, name in enumerate(CLASSES):
            f = F.normalize(model.encode_text(tok.encode([t.format(name) for t in templates])), dim=-1)
            torch.testing.assert_close(clf[:, k], F.normalize(f.mean(0), dim=0), atol=1e-5, rtol=1e-5)
    # one template (a string) is the same as a list of one
    torch.testing.assert_close(zeroshot_classifier(model, tok, CLASSES, SIMPLE_TEMPLATE),
                               zeroshot_classifier(model, tok, CLASSES, [SIMPLE_TEMPLATE]))


def test_logits_and_predict(model, tok):
    clf = zeroshot_classifier(model, tok, CLASSES, SHAPES_TEMPLATES)
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    logits = zeroshot_logits(model, imgs, clf)
    assert logits.shape == (4, len(CLASSES))
    assert logits.abs().max() <= model.inverse_temperature() + 1e-4  # scaled cosines
    x = (torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255 - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) \
        / torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(zeroshot_logits(model, x, clf), logits, atol=1e-4, rtol=1e-4)
    assert torch.equal(zeroshot_predict(model, imgs, clf), logits.argmax(1))


def test_accuracy_on_hand_made_logits():
    logits = torch.tensor([
        [9.0, 8, 7, 6, 5, 4],  # true 0: top1 hit
        [9.0, 8, 7, 6, 5, 4],  # true 4: top5 hit only
        [9.0, 8, 7, 6, 5, 4],  # true 5: miss
        [0.0, 1, 0, 0, 0, 0],  # true 1: top1 hit
    ])
    assert accuracy(logits, [0, 4, 5, 1]) == {"top1": 0.5, "top5": 0.75}
    assert accuracy(logits[:, :3], torch.tensor([0, 1, 2, 1])) == {"top1": 0.5}  # K < 5: no top5
    assert accuracy(logits, [0, 4, 5, 1], topk=(1, 2)) == {"top1": 0.5, "top2": 0.5}


def test_evaluate_zeroshot_with_a_model_that_knows_the_answer():
    classes = ["zero", "one", "two", "three", "four", "five"]
    true = torch.arange(6).repeat(4)  # 24 images
    images = true.float().view(-1, 1, 1, 1).expand(-1, 3, 8, 8).contiguous()
    labels = true.clone()
    labels[[0, 7]] = torch.tensor([3, 2])  # two wrongly labelled images
    out = evaluate_zeroshot(ClassStub(), ClassTokenizer(classes), images, labels, classes, ["a {}.", "the {}!"],
                            batch_size=5)
    # ties among the wrong classes go to the lower index: the labels 3 and 2 are both within the top 5
    assert out["top1"] == 22 / 24 and out["top5"] == 1.0
    assert out["num_images"] == 24 and torch.equal(out["predictions"], true)
    confusion = out["confusion"]
    assert confusion.shape == (6, 6) and confusion.sum() == 24
    assert confusion[3, 0] == 1 and confusion[2, 1] == 1  # rows = labels (true), columns = predicted
    assert confusion.diag().sum() == 22
    torch.testing.assert_close(out["per_class"], confusion.diag().float() / confusion.sum(1).float())


def test_evaluate_zeroshot_uint8_and_resize(model, tok):
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, (10, 16, 16, 3), dtype=np.uint8)  # 16 px: upsampled to the model's 32
    labels = rng.integers(0, len(CLASSES), 10)
    out = evaluate_zeroshot(model, tok, imgs, labels, CLASSES, SHAPES_TEMPLATES, batch_size=4)
    assert set(out) >= {"top1", "top5", "confusion"} and 0.0 <= out["top1"] <= out["top5"] <= 1.0
    assert out["confusion"].sum() == 10 and torch.equal(out["confusion"].sum(1), torch.bincount(
        torch.as_tensor(labels), minlength=len(CLASSES)))


# ---------------------------------------------------------------- CIFAR-10, offline


def write_fake_cifar10(root, n_per_batch=4):
    """Tiny files in CIFAR-10's official python format: one pickled dict per batch, plus batches.meta.

    The real files are Python 2 pickles: their str keys load as b"data", b"labels" with encoding="bytes" (the
    snippet on the CIFAR page) and as "data", "labels" with encoding="latin1" (torchvision). A Python 3 pickle with
    str keys loads the same way as the real files do in torchvision.
    """
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    batches = {}
    for name in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]:
        data = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)  # each row: R plane, G plane, B plane
        labels = rng.integers(0, 10, n_per_batch).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({"batch_label": name, "labels": labels, "data": data, "filenames": ["x.png"] * n_per_batch},
                        f, protocol=2)
        batches[name] = (data, labels)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": list(CIFAR10_CLASSES), "num_cases_per_batch": n_per_batch, "num_vis": 3072},
                    f, protocol=2)
    return batches


def test_load_cifar10_absent_offline_gives_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="Colab.*download=True"):
        load_cifar10(tmp_path)


def test_load_cifar10_reads_the_official_format(tmp_path, monkeypatch):
    batches = write_fake_cifar10(tmp_path)
    # Our fixture is not the real data, so its md5 sums differ: without a bypass torchvision refuses it.
    with pytest.raises(RuntimeError, match="corrupted"):
        load_cifar10(tmp_path)
    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setattr(tv_cifar, "check_integrity", lambda fpath, md5=None: __import__("os").path.isfile(fpath))
    images, labels = load_cifar10(tmp_path, train=False)
    data, expected_labels = batches["test_batch"]
    assert images.dtype == np.uint8 and images.shape == (4, 32, 32, 3)
    assert labels.dtype == np.int64 and labels.tolist() == expected_labels
    np.testing.assert_array_equal(images[2, :, :, 0], data[2, :1024].reshape(32, 32))  # red plane -> channel 0
    np.testing.assert_array_equal(images[2, 5, 7], data[2, [5 * 32 + 7, 1024 + 5 * 32 + 7, 2048 + 5 * 32 + 7]])
    train_images, train_labels = load_cifar10(tmp_path, train=True)
    assert train_images.shape == (20, 32, 32, 3) and len(train_labels) == 20


def test_zeroshot_on_cifar_shaped_images_upsamples(tmp_path, monkeypatch, tok):
    write_fake_cifar10(tmp_path, n_per_batch=3)
    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setattr(tv_cifar, "check_integrity", lambda fpath, md5=None: __import__("os").path.isfile(fpath))
    images, labels = load_cifar10(tmp_path)
    torch.manual_seed(0)
    model = MiniCLIP(CLIPConfig.preset("shapes-tiny", image_size=64, patch_size=16)).eval()  # 32 px -> 64 px
    out = evaluate_zeroshot(model, tok, images, labels, CIFAR10_CLASSES, CIFAR10_TEMPLATES[:2])
    assert "top5" in out and out["confusion"].shape == (10, 10)


def test_a_template_without_a_place_for_the_class_name_is_refused():
    """Without {}, every class gets the same caption: the classifier's columns are equal and it picks class 0."""
    tok = Tokenizer.train(["a photo of a red circle.", "a blue star"] * 20, 300, 32)
    model = MiniCLIP(CLIPConfig.preset("shapes-tiny", eot_token_id=tok.end_id))
    for bad in ("a photo.", "{} and {}", "{name}"):
        with pytest.raises(ValueError, match="exactly one {}"):
            zeroshot_classifier(model, tok, ["red circle", "blue star"], ["a {}.", bad])
    assert zeroshot_classifier(model, tok, ["red circle", "blue star"], "a photo of a {}.").shape == (64, 2)


def test_a_class_named_twice_is_refused():
    """Two equal columns split the probability between them, and argmax always picks the first."""
    tok = Tokenizer.train(["a photo of a red circle.", "a blue star"] * 20, 300, 32)
    model = MiniCLIP(CLIPConfig.preset("shapes-tiny", eot_token_id=tok.end_id))
    with pytest.raises(ValueError, match=r"more than once: \['red circle'\]"):
        zeroshot_classifier(model, tok, ["red circle", "blue star", "red circle"], "a photo of a {}.")
