import math

import pytest
import torch
import torch.nn.functional as F

from miniclip import clip_loss


def reference_loss(logits):
    """The paper's pseudo-code, written out with explicit loops."""
    n = logits.shape[0]
    i2t = -sum(torch.log_softmax(logits[i], 0)[i] for i in range(n)) / n
    t2i = -sum(torch.log_softmax(logits[:, j], 0)[j] for j in range(n)) / n
    return (i2t + t2i) / 2


def test_matches_hand_written_reference():
    logits = torch.randn(7, 7, generator=torch.Generator().manual_seed(0)) * 3
    torch.testing.assert_close(clip_loss(logits), reference_loss(logits))


@pytest.mark.parametrize("n", [1, 2, 16, 128])
def test_equal_logits_give_ln_n(n):
    assert clip_loss(torch.full((n, n), 4.2)).item() == pytest.approx(math.log(n), abs=1e-5)


def test_is_symmetric_not_one_sided():
    logits = torch.randn(6, 6, generator=torch.Generator().manual_seed(1))
    one_sided = F.cross_entropy(logits, torch.arange(6))
    assert not torch.allclose(clip_loss(logits), one_sided)
    torch.testing.assert_close(clip_loss(logits), clip_loss(logits.t().contiguous()))


def test_hard_negative_columns_only_enter_image_to_text():
    g = torch.Generator().manual_seed(2)
    square, extra = torch.randn(5, 5, generator=g), torch.randn(5, 3, generator=g)
    with_neg = clip_loss(torch.cat([square, extra], 1))
    expected = (F.cross_entropy(torch.cat([square, extra], 1), torch.arange(5)) + F.cross_entropy(square.t(), torch.arange(5))) / 2
    torch.testing.assert_close(with_neg, expected)
    assert F.cross_entropy(torch.cat([square, extra], 1), torch.arange(5)) > F.cross_entropy(square, torch.arange(5))


def test_perfect_alignment_gives_near_zero_loss():
    assert clip_loss(torch.eye(8) * 100).item() < 1e-6
