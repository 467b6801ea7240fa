"""The checkers of lessons 05-08: each accepts a right answer, rejects the stub and names the usual mistakes."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from miniclip import CLIPConfig, MiniCLIP, Tokenizer
from miniclip.course.check_lessons_5_8 import (check_choice_credit, check_retrieval_recall, check_siglip_loss,
                                                check_swap_relation, check_template_ensemble)
from miniclip.data import shapes


def stub(*args):
    raise NotImplementedError("Exercise: write your solution here")


# ---------------------------------------------------------------------------------------------- 05: prompt ensembling

def ensemble(text_features):  # the notebook's solution
    features = F.normalize(text_features, dim=-1)  # [K, T, D], every caption's feature unit length
    return F.normalize(features.mean(dim=1), dim=-1).t()  # [D, K]


def test_template_ensemble_accepts_the_solution():
    assert check_template_ensemble(ensemble)
    assert check_template_ensemble(lambda x: F.normalize(F.normalize(x, dim=2).sum(dim=1), dim=1).T.contiguous())


def test_template_ensemble_against_zeroshot_classifier():
    torch.manual_seed(0)
    tokenizer = Tokenizer.train(shapes.class_names() + ["a photo of a red circle."], vocab_size=300)
    model = MiniCLIP(CLIPConfig.preset("shapes-tiny", eot_token_id=tokenizer.end_id))
    assert check_template_ensemble(ensemble, model, tokenizer)
    assert model.training  # the checker restores the mode it found

    def ignores_input(x):  # right on the random cases only if it were the reference; wrong on the model
        return ensemble(x) if x.shape[-1] != model.config.embed_dim else ensemble(x) + 0.1

    r = check_template_ensemble(ignores_input, model, tokenizer)
    assert not r and "zeroshot_classifier" in r.hint


@pytest.mark.parametrize("wrong, hint", [
    (lambda x: F.normalize(F.normalize(x, dim=1).mean(dim=1), dim=-1).t(), "wrong axis"),
    (lambda x: F.normalize(F.normalize(x, dim=-1).mean(dim=1), dim=0).t(), "renormalised along the wrong axis"),
    (lambda x: F.normalize(x, dim=-1).mean(dim=1).t(), "forgot to renormalise"),
    (lambda x: F.normalize(x.mean(dim=1), dim=-1).t(), "before averaging"),
    (lambda x: ensemble(x).t(), "transpose"),
    (stub, "not implemented"),
    (lambda x: None, "return"),
])
def test_template_ensemble_names_the_mistake(wrong, hint, capsys):
    r = check_template_ensemble(wrong)
    assert not r and hint in r.hint
    assert "WRONG" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------- 06: recall@k

def recall_at_k(similarity, caption_image, k):  # the notebook's solution
    n_img = similarity.shape[0]
    top_captions = similarity.topk(k, dim=1).indices  # [N_img, k]
    i2t = (caption_image[top_captions] == torch.arange(n_img)[:, None]).any(dim=1).float().mean()
    top_images = similarity.topk(k, dim=0).indices  # [k, C]
    t2i = (top_images == caption_image[None, :]).any(dim=0).float().mean()
    return 100 * i2t.item(), 100 * t2i.item()


def caption_weighted(similarity, caption_image, k):  # image->text hits averaged over captions, not images
    hit = (caption_image[similarity.topk(k, dim=1).indices] == torch.arange(similarity.shape[0])[:, None]).any(dim=1)
    return 100 * hit[caption_image].float().mean().item(), recall_at_k(similarity, caption_image, k)[1]


def test_recall_at_k_accepts_the_solution():
    assert check_retrieval_recall(recall_at_k)
    assert check_retrieval_recall(lambda s, c, k: torch.tensor(recall_at_k(s, c, k)))


@pytest.mark.parametrize("wrong, hint", [
    (lambda s, c, k: recall_at_k(s, c, k)[::-1], "swapped"),
    (lambda s, c, k: tuple(v / 100 for v in recall_at_k(s, c, k)), "percent"),
    (lambda s, c, k: recall_at_k(s, c, k + 1), "recall@(k+1)"),
    (lambda s, c, k: recall_at_k(s, c, k - 1) if k > 1 else (0.0, 0.0), "recall@(k-1)"),
    (caption_weighted, "averaged over the captions"),
    (stub, "not implemented"),
])
def test_recall_at_k_names_the_mistake(wrong, hint):
    r = check_retrieval_recall(wrong)
    assert not r and hint in r.hint


def test_recall_at_k_first_caption_only():
    def first_only(s, c, k):
        first = torch.tensor([int((c == i).nonzero()[0]) for i in range(s.shape[0])])
        i2t = (s.topk(k, dim=1).indices == first[:, None]).any(dim=1).float().mean().item()
        return 100 * i2t, recall_at_k(s, c, k)[1]

    r = check_retrieval_recall(first_only)
    assert not r and "ANY" in r.hint


# ---------------------------------------------------------------------------------------------- 08: SigLIP

def siglip_loops(logits, t, b):
    """The loss written out pair by pair, independently of the checker's vectorised reference."""
    n = logits.shape[0]
    total = 0.0
    for i in range(n):
        for j in range(n):
            z = t * logits[i, j].item() + b
            label = 1.0 if i == j else -1.0
            total += math.log1p(math.exp(-label * z))  # -log sigmoid(label * z)
    return torch.tensor(total / n)


def siglip(logits, t, b):  # the notebook's solution
    labels = 2 * torch.eye(logits.shape[0]) - 1
    return -F.logsigmoid(labels * (t * logits + b)).sum(dim=1).mean()


def test_siglip_reference_matches_a_loop():
    assert check_siglip_loss(siglip_loops)  # so the reference inside the checker is the loss written out
    assert check_siglip_loss(siglip)
    assert check_siglip_loss(lambda c, t, b: F.binary_cross_entropy_with_logits(
        t * c + b, torch.eye(len(c)), reduction="sum") / len(c))  # the 0/1-label form is the same loss


@pytest.mark.parametrize("wrong, hint", [
    (lambda c, t, b: -F.logsigmoid((2 * torch.eye(len(c)) - 1) * (t * c + b)).mean(), "N x N"),
    (lambda c, t, b: -F.logsigmoid(torch.eye(len(c)) * (t * c + b)).sum(1).mean(), "-1"),
    (lambda c, t, b: -F.logsigmoid((1 - 2 * torch.eye(len(c))) * (t * c + b)).sum(1).mean(), "flipped"),
    (lambda c, t, b: siglip(c, t, 0.0), "bias"),
    (lambda c, t, b: -siglip(c, t, b), "sign"),
    (stub, "not implemented"),
])
def test_siglip_names_the_mistake(wrong, hint):
    r = check_siglip_loss(wrong)
    assert not r and hint in r.hint


# ---------------------------------------------------------------------------------------------- 07: failure modes

def credit_solution(scores, answer):  # the notebook's solution
    scores, answer = torch.as_tensor(scores), torch.as_tensor(answer)
    top = scores == scores.max(dim=1, keepdim=True).values  # [N, M]: which options tie for the best
    return top[torch.arange(len(scores)), answer].float() / top.sum(dim=1)


def test_choice_credit_accepts_the_solution():
    assert check_choice_credit(credit_solution)
    assert check_choice_credit(lambda s, a: credit_solution(s, a).double().numpy())  # numpy is fine too


@pytest.mark.parametrize("wrong, hint", [
    (lambda s, a: (torch.as_tensor(s).argmax(dim=1) == torch.as_tensor(a)).float(), "argmax"),
    (lambda s, a: (torch.as_tensor(s)[torch.arange(len(s)), torch.as_tensor(a)] == torch.as_tensor(s).max(dim=1).values).float(),
     "full credit"),
    (lambda s, a: credit_solution(s, a).mean(), "shape"),
    (stub, "not implemented"),
])
def test_choice_credit_names_the_mistake(wrong, hint):
    r = check_choice_credit(wrong)
    assert not r and hint in r.hint


def swap_solution(caption):  # the notebook's solution
    stop = "." if caption.endswith(".") else ""
    caption = caption.removesuffix(".")
    prefix = "a photo of " if caption.startswith("a photo of ") else ""
    for rel in (" to the left of ", " to the right of ", " above ", " below "):
        if rel in caption:
            a, b = caption.removeprefix(prefix).split(rel, 1)
            return prefix + b + rel + a + stop
    return None


def test_swap_relation_accepts_the_solution():
    assert check_swap_relation(swap_solution)


@pytest.mark.parametrize("wrong, hint", [
    (lambda c: c.replace(" to the left of ", " to the right of ").replace(" above ", " below "), "relation word"),
    (lambda c: None if " and " in c or "two" in c else " ".join(reversed(c.split(" to the left of "))), "expected"),
    (lambda c: swap_solution(c.removeprefix("a photo of ")) if c.startswith("a photo of") else swap_solution(c), "expected"),
    (lambda c: swap_solution(c) or c, "return None"),
    (lambda c: swap_solution(c.removeprefix("a photo of ")).replace(" above ", " above a photo of ", 1)
     if c.startswith("a photo of ") and swap_solution(c) else swap_solution(c), "prefix"),
    (stub, "not implemented"),
])
def test_swap_relation_names_the_mistake(wrong, hint):
    r = check_swap_relation(wrong)
    assert not r and hint in r.hint
