import math

import pytest
import torch

from miniclip import CLIPConfig, MiniCLIP
from miniclip.config import PRESETS
from miniclip.model import read_token


def tiny(**kw):
    return CLIPConfig.preset("shapes-tiny", **kw)


def tokens_for(cfg, batch, length=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    length = length or cfg.context_length
    t = torch.randint(4, cfg.vocab_size, (batch, length), generator=g)
    ends = torch.randint(1, length, (batch,), generator=g)
    for i, e in enumerate(ends):
        t[i, e] = cfg.eot_token_id
        t[i, e + 1:] = 0
    return t


def test_shapes_and_logits():
    cfg = tiny()
    model = MiniCLIP(cfg).eval()
    images = torch.randn(5, 3, cfg.image_size, cfg.image_size)
    tokens = tokens_for(cfg, 3)
    assert model.encode_image(images).shape == (5, cfg.embed_dim)
    assert model.encode_text(tokens).shape == (3, cfg.embed_dim)
    lpi, lpt = model(images, tokens)
    assert lpi.shape == (5, 3) and lpt.shape == (3, 5)
    torch.testing.assert_close(lpi.t(), lpt)
    # logits are scaled cosines: |logit| <= scale
    assert lpi.abs().max() <= model.inverse_temperature() + 1e-4


def test_logit_scale_init_and_clamp():
    model = MiniCLIP(tiny())
    assert model.logit_scale.item() == pytest.approx(math.log(1 / 0.07), abs=1e-6)
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    assert model.inverse_temperature().item() == pytest.approx(100.0, rel=1e-5)  # forward never uses more than 100
    model.clamp_logit_scale()
    assert model.logit_scale.item() == pytest.approx(math.log(100), abs=1e-6)


def test_pooling_reads_the_end_token_by_position():
    """The text feature depends on the tokens up to <end> only, whatever follows, and not on the highest id."""
    cfg = tiny()
    model = MiniCLIP(cfg).eval()
    t = tokens_for(cfg, 2)
    t2 = t.clone()
    end = int((t2[0] == cfg.eot_token_id).nonzero()[0])
    t2[0, end + 1:] = cfg.vocab_size - 1  # junk after the end token, with a higher id
    with torch.no_grad():
        torch.testing.assert_close(model.encode_text(t), model.encode_text(t2))
        t3 = t.clone()
        t3[0, 0] = (t3[0, 0] + 1) % cfg.vocab_size or 5  # change a token before the end: the feature changes
        assert not torch.allclose(model.encode_text(t)[0], model.encode_text(t3)[0])


def test_causal_text_attention():
    """Changing a later token never changes an earlier position's activations."""
    cfg = tiny()
    model = MiniCLIP(cfg).eval()
    x = torch.randn(1, 6, cfg.text_width)
    y = x.clone()
    y[0, 4:] += 1.0
    block = model.text.blocks[0]
    with torch.no_grad():
        torch.testing.assert_close(block(x)[0, :4], block(y)[0, :4])
        assert not torch.allclose(block(x)[0, 4:], block(y)[0, 4:])


def test_attention_weights_are_causal_rows_that_sum_to_one_and_give_the_fused_output():
    """return_weights=True computes softmax(q k^T / sqrt(d) + mask) v explicitly: the same output as the fused
    kernel, and weights that are zero above the diagonal (text tower) with every row summing to 1."""
    cfg = tiny()
    model = MiniCLIP(cfg).eval()
    x = torch.randn(3, 7, cfg.text_width, generator=torch.Generator().manual_seed(0))
    block = model.text.blocks[0]
    with torch.no_grad():
        output, weights = block.attn(block.ln_1(x), return_weights=True)
        fused = block.attn(block.ln_1(x))
    assert weights.shape == (3, cfg.text_heads, 7, 7) and output.shape == fused.shape == (3, 7, cfg.text_width)
    torch.testing.assert_close(output, fused, rtol=1e-5, atol=1e-6)
    seen = torch.ones(7, 7, dtype=torch.bool).tril()  # [T, T]: token i sees tokens 0..i
    assert (weights[..., ~seen] == 0).all() and (weights[..., seen] > 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, cfg.text_heads, 7))
    image_weights = model.visual.blocks[0].attn(torch.randn(2, 5, cfg.vision_width), return_weights=True)[1]
    assert (image_weights > 0).all()  # no mask in the image tower: every patch sees every patch


@pytest.mark.parametrize("tower", ["visual", "text"])
def test_read_token_equals_running_every_block_then_picking_the_token(tower):
    """The speed shortcut (the last block computes one token, the text tower drops trailing padding) changes no
    number: it equals the plain loop over the blocks followed by picking each row's pooled token."""
    cfg = tiny(vision_layers=3, text_layers=3)
    model = MiniCLIP(cfg).eval()
    blocks = getattr(model, tower).blocks
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 9, blocks[0].ln_1.normalized_shape[0], generator=g)  # [B, T, W]
    index = torch.tensor([0, 3, 5, 2]) if tower == "text" else torch.zeros(4, dtype=torch.long)
    with torch.no_grad():
        plain = x
        for block in blocks:
            plain = block(plain)
        expected = plain[torch.arange(4), index]  # [B, W]
        torch.testing.assert_close(read_token(blocks, x, index), expected, rtol=1e-5, atol=1e-6)


def test_text_feature_does_not_depend_on_padding_or_the_rest_of_the_batch():
    """encode_text drops padding columns past the batch's last end token: a caption's feature must not change
    with the padding length or with a long caption elsewhere in the batch."""
    cfg = tiny()
    model = MiniCLIP(cfg).eval()
    short = tokens_for(cfg, 4, length=8)  # every end token before column 8
    padded = torch.cat([short, torch.zeros(4, cfg.context_length - 8, dtype=torch.long)], dim=1)  # [4, 32]
    long_row = tokens_for(cfg, 1, seed=1)
    long_row[0, :] = 5
    long_row[0, -1] = cfg.eot_token_id  # ends at the last column
    with torch.no_grad():
        alone = model.encode_text(short)
        torch.testing.assert_close(model.encode_text(padded), alone, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(model.encode_text(torch.cat([padded, long_row]))[:4], alone, rtol=1e-5, atol=1e-6)
        moved = padded.clone()
        moved[0, 9] = 7  # a token after row 0's end token: its feature is read at the end token, before it
        torch.testing.assert_close(model.encode_text(moved)[0], alone[0], rtol=1e-5, atol=1e-6)


def test_wrong_sizes_raise_clear_errors():
    cfg = tiny()
    model = MiniCLIP(cfg)
    with pytest.raises(ValueError, match=r"\[batch, 3, 32, 32\]"):
        model.encode_image(torch.randn(2, 3, 64, 64))
    with pytest.raises(ValueError, match="context length"):
        model.encode_text(torch.zeros(2, cfg.context_length + 1, dtype=torch.long))


def test_presets_build_and_unknown_preset_lists_known():
    for name in PRESETS:
        cfg = CLIPConfig.preset(name)
        assert cfg.image_size % cfg.patch_size == 0
    with pytest.raises(ValueError, match="shapes-tiny"):
        CLIPConfig.preset("nope")
    assert 0.2e6 < MiniCLIP(tiny()).num_parameters() < 0.4e6


def test_config_round_trip_and_validation():
    cfg = tiny(activation="quick_gelu")
    assert CLIPConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="activation"):
        tiny(activation="relu")
    with pytest.raises(ValueError, match="unknown fields"):
        CLIPConfig.from_dict({**cfg.to_dict(), "colour": 1})


def test_init_follows_reference_code():
    cfg = CLIPConfig.preset("coco-small")
    torch.manual_seed(0)
    model = MiniCLIP(cfg)
    assert model.text.token_embedding.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert model.text.positional_embedding.std().item() == pytest.approx(0.01, rel=0.05)
    proj_std = cfg.text_width**-0.5 * (2 * cfg.text_layers) ** -0.5
    assert model.text.blocks[0].attn.out.weight.std().item() == pytest.approx(proj_std, rel=0.05)


def test_gradient_reaches_every_parameter_and_the_temperature():
    from miniclip import clip_loss

    cfg = tiny()
    model = MiniCLIP(cfg)
    lpi, _ = model(torch.randn(4, 3, 32, 32), tokens_for(cfg, 4))
    clip_loss(lpi).backward()
    assert model.logit_scale.grad is not None and model.logit_scale.grad.abs() > 0
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    assert unused == []
