import json

import pytest
import torch

import miniclip
from miniclip import CLIPConfig, MiniCLIP, Tokenizer


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.train(["a red circle", "two blue squares", "a green star"] * 10, vocab_size=280, context_length=32)


def test_round_trip(tmp_path, tok):
    torch.manual_seed(0)
    model = MiniCLIP(CLIPConfig.preset("shapes-tiny")).eval()
    miniclip.save(model, tok, tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]
    model2, tok2 = miniclip.load(tmp_path / "ckpt")
    assert model2.config == model.config
    for (k, a), (_, b) in zip(model.state_dict().items(), model2.state_dict().items()):
        assert torch.equal(a, b), k
    images, tokens = torch.randn(2, 3, 32, 32), tok.encode(["a red circle", "a green star"])
    torch.testing.assert_close(model(images, tokens)[0], model2(images, tok2.encode(["a red circle", "a green star"]))[0])


def test_shape_mismatch_names_tensor_and_shapes(tmp_path, tok):
    miniclip.save(MiniCLIP(CLIPConfig.preset("shapes-tiny")), tok, tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["embed_dim"] = 32
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"visual.proj.*\[64, 64\].*\[64, 32\]"):
        miniclip.load(tmp_path)


def test_bad_config_and_missing_files(tmp_path, tok):
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        miniclip.load(tmp_path)
    miniclip.save(MiniCLIP(CLIPConfig.preset("shapes-tiny")), tok, tmp_path)
    (tmp_path / "config.json").write_text('{"image_size": 32, "colour": "red"}')
    with pytest.raises(ValueError, match="config.json"):
        miniclip.load(tmp_path)


def test_interrupted_save_keeps_previous_checkpoint(tmp_path, tok, monkeypatch):
    model = MiniCLIP(CLIPConfig.preset("shapes-tiny"))
    miniclip.save(model, tok, tmp_path)
    before = (tmp_path / "model.safetensors").read_bytes()
    import miniclip.checkpoint as ck

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(ck, "save_file", boom)
    with torch.no_grad():
        model.logit_scale.add_(1)
    with pytest.raises(KeyboardInterrupt):
        miniclip.save(model, tok, tmp_path)
    assert (tmp_path / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]


def test_checkpoint_is_not_a_pickle(tmp_path, tok):
    miniclip.save(MiniCLIP(CLIPConfig.preset("shapes-tiny")), tok, tmp_path)
    head = (tmp_path / "model.safetensors").read_bytes()[:16]
    assert not head.startswith(b"\x80") and not head.startswith(b"PK")  # neither pickle nor torch.save's zip


def test_weights_digest_follows_the_weights_not_the_files_bytes(tmp_path):
    from miniclip.checkpoint import save_tensors, weights_digest

    weights = {"w": torch.randn(4, 3), "scale": torch.tensor(2.5), "half": torch.randn(3).to(torch.bfloat16)}
    files = [tmp_path / f"{i}.safetensors" for i in range(8)]
    for i, path in enumerate(files):  # the same weights, saved with metadata as training saves them
        save_tensors(weights, path, metadata={"format": "miniclip", "step": "3", "i": str(i % 2)})
    assert len({weights_digest(p) for p in files}) == 1
    changed = dict(weights, scale=torch.tensor(2.5000002))
    save_tensors(changed, tmp_path / "changed.safetensors")
    assert weights_digest(tmp_path / "changed.safetensors") != weights_digest(files[0])
