"""miniclip <-> transformers.CLIPModel: same embeddings both ways, and an export that transformers' tools load."""
import math

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")
from PIL import Image  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from miniclip import CLIPConfig, MiniCLIP, Tokenizer  # noqa: E402
from miniclip.data import CLIP_MEAN, CLIP_STD  # noqa: E402
from miniclip.hf import clip_image_processor, from_transformers, to_transformers  # noqa: E402

CAPTIONS = ["a photo of a red circle", "two blue squares", "a photo of a cat", "a photo of a dog",
            "a green star to the left of a yellow triangle", "a small bird on a branch"] * 10
LABELS = ["cat", "dog", "bird", "red circle"]
TEMPLATE = "a photo of a {}."


def small_config(**kw):
    return CLIPConfig.preset("coco-small", vision_width=64, vision_layers=2, text_width=64, text_layers=2, embed_dim=32,
                             vocab_size=300, image_size=32, patch_size=8, context_length=16, **kw)


@torch.no_grad()
def jiggle(model, seed=0):
    """Random weights everywhere: initialisation leaves biases at 0 and LayerNorms at 1, which hides mix-ups."""
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model.eval()


def features(out):
    """get_*_features returns a tensor in transformers 4 and an output object in transformers 5."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def pixels(image, size=32):
    """PIL image -> [1, 3, size, size], as transformers' CLIP image processor prepares it."""
    return clip_image_processor(size)(images=image, return_tensors="pt")["pixel_values"]


def random_image(size, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def text_tokens(vocab_size, end_id, pad_id, batch=4, length=16, seed=0):
    """Random captions [batch, length]: ids below `end_id`'s range, then the end token, then padding."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(4, vocab_size - 1, (batch, length), generator=g)
    for row, end in zip(tokens, torch.randint(2, length, (batch,), generator=g)):
        row[end], row[end + 1:] = end_id, pad_id
    return tokens


def assert_same_function(model, hf_model, tokens):
    images = torch.randn(3, 3, model.config.image_size, model.config.image_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(images), features(hf_model.get_image_features(pixel_values=images)),
                                   atol=1e-5, rtol=0)
        torch.testing.assert_close(model.encode_text(tokens), features(hf_model.get_text_features(input_ids=tokens)),
                                   atol=1e-5, rtol=0)
        torch.testing.assert_close(model(images, tokens)[0],
                                   hf_model(input_ids=tokens, pixel_values=images).logits_per_image, atol=1e-4, rtol=0)


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.train(CAPTIONS, vocab_size=300, context_length=16)


@pytest.mark.parametrize("activation", ["gelu", "quick_gelu"])
def test_export_matches_transformers(tmp_path, tok, activation):
    model = jiggle(MiniCLIP(small_config(activation=activation)))
    to_transformers(model, tok, tmp_path)
    hf_model = transformers.CLIPModel.from_pretrained(tmp_path).eval()
    assert hf_model.config.text_config.hidden_act == hf_model.config.vision_config.hidden_act == activation
    assert hf_model.config.text_config.eos_token_id == tok.end_id == 3
    assert_same_function(model, hf_model, text_tokens(300, tok.end_id, tok.pad_id))
    # the exported tokenizer tokenizes as miniclip does, and gives CLIPModel only what it takes
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path)
    if int(transformers.__version__.split(".")[0]) >= 5:  # transformers 4's CLIPProcessor takes only OpenAI's tokenizer
        hf_tok = transformers.AutoProcessor.from_pretrained(tmp_path).tokenizer
    ids = hf_tok(CAPTIONS[:3], padding="max_length", truncation=True, max_length=16, return_tensors="pt")
    assert torch.equal(ids["input_ids"], tok.encode(CAPTIONS[:3]))
    assert sorted(ids) == ["attention_mask", "input_ids"]


def hf_clip(activation, eos_token_id, vocab_size=300):
    common = dict(hidden_act=activation, projection_dim=32)
    cfg = transformers.CLIPConfig(
        text_config=dict(vocab_size=vocab_size, hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=16, eos_token_id=eos_token_id,
                         bos_token_id=vocab_size - 2, pad_token_id=1, **common),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=48, intermediate_size=192, num_hidden_layers=2,
                           num_attention_heads=4, **common),
        projection_dim=32,
    )
    torch.manual_seed(0)
    return jiggle(transformers.CLIPModel(cfg))


@pytest.mark.parametrize("activation", ["gelu", "quick_gelu"])
def test_import_matches_transformers(activation):
    hf_model = hf_clip(activation, eos_token_id=5)
    model, tokenizer = from_transformers(hf_model)
    assert tokenizer is None and model.config.eot_token_id == 5 and model.config.activation == activation
    assert_same_function(model, hf_model, text_tokens(300, end_id=5, pad_id=1))


def test_import_legacy_eos_2_pools_at_the_first_end_token():
    """OpenAI's configs say eos_token_id 2 (transformers then pools at the highest id); their real end token is the
    highest id and also the padding, so miniclip's first-end-token pooling must read the same position."""
    hf_model = hf_clip("quick_gelu", eos_token_id=2)
    model, _ = from_transformers(hf_model)
    assert model.config.eot_token_id == 299
    assert_same_function(model, hf_model, text_tokens(300, end_id=299, pad_id=299))


def test_round_trip_through_a_directory(tmp_path, tok):
    model = jiggle(MiniCLIP(small_config()))
    with torch.no_grad():
        model.logit_scale.fill_(7.0)  # above the clamp: the export carries the scale miniclip uses, ln 100
    to_transformers(model, tok, tmp_path)
    assert transformers.CLIPModel.from_pretrained(tmp_path).logit_scale.item() == pytest.approx(math.log(100))
    model2, tok2 = from_transformers(tmp_path)
    assert model2.config == CLIPConfig.from_dict({**model.config.to_dict(), "init_logit_scale": math.log(100)})
    for name, tensor in model.state_dict().items():
        expected = tensor.clamp(max=math.log(100)) if name == "logit_scale" else tensor
        assert torch.equal(model2.state_dict()[name], expected), name
    assert torch.equal(tok2.encode(CAPTIONS[:4]), tok.encode(CAPTIONS[:4]))
    assert tok2.decode(tok2.encode(["A photo of a cat"])) == ["a photo of a cat"]
    assert (tok2.context_length, tok2.end_id, tok2.pad_id, tok2.vocab_size) == (16, 3, 0, tok.vocab_size)
    image = random_image(48)  # resized (bicubic) and cropped to the model's 32 px by the exported processor
    assert tok2.image_transform([image]).shape == (1, 3, 32, 32)
    torch.testing.assert_close(tok2.image_transform(image), pixels(image), atol=0, rtol=0)


def test_pipeline_ranks_labels_as_miniclip(tmp_path, tok):
    model = jiggle(MiniCLIP(small_config()), seed=1)
    to_transformers(model, tok, tmp_path)
    classify = transformers.pipeline("zero-shot-image-classification", model=str(tmp_path))
    for size in (32, 48):  # the model's size, and one the processor must resize (bicubic) first
        image = random_image(size)
        got = classify(image, candidate_labels=LABELS, hypothesis_template=TEMPLATE)
        with torch.no_grad():
            logits, _ = model(pixels(image), tok.encode([TEMPLATE.format(label) for label in LABELS]))
        probs = logits.softmax(dim=-1)[0]
        expected = sorted(zip(probs.tolist(), LABELS), reverse=True)
        assert [r["label"] for r in got] == [label for _, label in expected]
        np.testing.assert_allclose([r["score"] for r in got], [p for p, _ in expected], atol=1e-5)


def test_the_exported_processor_normalises_with_clip_statistics(tmp_path, tok):
    """An image already at the model's size is only scaled to 0-1 and normalised with CLIP's mean and std."""
    to_transformers(MiniCLIP(small_config()), tok, tmp_path)
    _, tok2 = from_transformers(tmp_path)
    image = random_image(32)
    rgb = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)  # [32, 32, 3] -> [3, 32, 32]
    expected = (rgb - torch.tensor(CLIP_MEAN)[:, None, None]) / torch.tensor(CLIP_STD)[:, None, None]
    torch.testing.assert_close(tok2.image_transform(image)[0], expected, atol=1e-5, rtol=0)


def test_a_folder_that_holds_something_is_refused_unless_overwrite(tmp_path, tok):
    model = jiggle(MiniCLIP(small_config()))
    out = tmp_path / "export"
    out.mkdir()
    to_transformers(model, tok, out)  # an empty folder is fine
    (out / "notes.txt").write_text("mine")
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(FileExistsError, match=r"(?s)export.*--overwrite.*overwrite=True"):
        to_transformers(model, tok, out)
    assert sorted(p.name for p in out.iterdir()) == before and (out / "notes.txt").read_text() == "mine"
    with torch.no_grad():
        model.logit_scale.fill_(2.0)
    to_transformers(model, tok, out, overwrite=True)  # replaces what the folder held
    assert not (out / "notes.txt").exists()
    assert transformers.CLIPModel.from_pretrained(out).logit_scale.item() == pytest.approx(2.0)


def test_a_conv_stem_is_refused_with_a_way_out(tmp_path, tok):
    with pytest.raises(ValueError, match=r"(?s)convolutional stem.*no equivalent.*without a stem"):
        to_transformers(MiniCLIP(CLIPConfig.preset("shapes-tiny", vocab_size=300, context_length=16)), tok, tmp_path)
    assert not any(tmp_path.iterdir())  # refused before writing anything


def test_export_without_a_clip_processor_still_loads(tmp_path, tok, monkeypatch):
    """transformers 4 refuses a generic tokenizer in a CLIPProcessor: the image processor and tokenizer are then
    saved side by side, which is all the pipeline needs."""
    def refuse(**kwargs):
        raise TypeError("only CLIP's tokenizer classes")

    monkeypatch.setattr(transformers, "CLIPProcessor", refuse)
    model = jiggle(MiniCLIP(small_config()))
    to_transformers(model, tok, tmp_path)
    monkeypatch.undo()
    image = random_image(32)
    got = transformers.pipeline("zero-shot-image-classification", model=str(tmp_path))(
        image, candidate_labels=LABELS, hypothesis_template=TEMPLATE)
    with torch.no_grad():
        probs = model(pixels(image), tok.encode([TEMPLATE.format(label) for label in LABELS]))[0].softmax(-1)[0]
    scores = {r["label"]: r["score"] for r in got}
    np.testing.assert_allclose([scores[label] for label in LABELS], probs.tolist(), atol=1e-5)


def test_from_transformers_refuses_what_is_not_a_complete_clip(tmp_path, tok):
    """A miniclip run folder used to load as a ViT-B/32 of random weights: transformers starts missing weights at
    random and says so only in a log."""
    from miniclip.checkpoint import load, save

    save(MiniCLIP(small_config()), tok, tmp_path / "run")
    with pytest.raises(ValueError, match=r"not a transformers CLIP folder.*miniclip\.load"):
        from_transformers(tmp_path / "run")
    to_transformers(jiggle(MiniCLIP(small_config())), tok, tmp_path / "export")
    with safe_open(tmp_path / "export" / "model.safetensors", "pt") as f:  # drop one tensor: an incomplete checkpoint
        tensors = {k: f.get_tensor(k) for k in f.keys() if k != "text_projection.weight"}
    save_file(tensors, tmp_path / "export" / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"1 weights of its CLIPModel are missing \(e\.g\. text_projection"):
        from_transformers(tmp_path / "export")
    with pytest.raises(ValueError, match=r"transformers CLIP: load it with miniclip\.hf\.from_transformers"):
        load(tmp_path / "export")  # and the other way round


def test_an_export_that_fails_half_way_leaves_the_old_one_whole(tmp_path, tok, monkeypatch):
    """--overwrite used to delete the old export first: a failure while writing (a full disk) lost both."""
    model = jiggle(MiniCLIP(small_config()))
    out = to_transformers(model, tok, tmp_path / "export")
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(transformers.CLIPModel, "save_pretrained", disk_full)
    with pytest.raises(OSError, match="No space left"):
        to_transformers(model, tok, out, overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["export"]  # no half-written folder left beside it
