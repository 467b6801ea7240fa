import torch
import torch.nn.functional as F

import miniclip
from miniclip.course.check_lessons_1_4 import check_clip_loss, check_similarity
from miniclip.course.checkers import cmp


def test_cmp_exact_close_and_wrong(capsys):
    x = torch.randn(4, 4)
    assert cmp("a", x, x).status == "exact"
    assert cmp("b", x + 1e-7, x).status == "close"
    r = cmp("c", x + 1, x)
    assert not r and "max diff 1" in r.hint
    assert not cmp("d", x[:2], x) and "shape" in cmp("d", x[:2], x).hint
    assert "exact" in capsys.readouterr().out


def test_clip_loss_checker_accepts_solution_and_rejects_mistakes():
    assert check_clip_loss(miniclip.clip_loss)

    def one_sided(logits):
        return F.cross_entropy(logits, torch.arange(len(logits)))

    def transposed_targets(logits):
        t = torch.arange(len(logits)).flip(0)
        return (F.cross_entropy(logits, t) + F.cross_entropy(logits.t(), t)) / 2

    def stub(logits):
        raise NotImplementedError

    r = check_clip_loss(one_sided)
    assert not r and "symmetric" in r.hint
    r = check_clip_loss(transposed_targets)
    assert not r and "diagonal" in r.hint
    r = check_clip_loss(stub)
    assert not r and "not implemented" in r.hint


def test_similarity_checker():
    def right(a, b, s):
        return s * F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).t()

    def wrong_axis(a, b, s):
        return s * F.normalize(a, dim=0) @ F.normalize(b, dim=0).t()

    def divided(a, b, s):
        return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).t() / s

    assert check_similarity(right)
    r = check_similarity(wrong_axis)
    assert not r and "wrong axis" in r.hint
    r = check_similarity(divided)
    assert not r and "temperature" in r.hint
