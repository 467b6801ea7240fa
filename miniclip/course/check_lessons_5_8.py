"""The exercise checkers of lessons 5-10: prompt ensembles, retrieval recall, the probes' credit and hard
negatives, SigLIP's loss.

    from miniclip.course.check_lessons_5_8 import check_siglip_loss
    check_siglip_loss(my_siglip_loss)     # prints: siglip_loss | exact   (or what the mistake looks like)

Each compares a student's function with the library's own (zeroshot_classifier, retrieval_metrics, choice_credit,
swap_relation, siglip_loss).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from miniclip.course.checkers import CheckResult, cmp, diagnose
from miniclip.data.shapes import INVERSE, RELATIONS, swap_relation
from miniclip.encode import model_device
from miniclip.evaluate import retrieval_metrics
from miniclip.loss import clip_loss, siglip_loss
from miniclip.probes import choice_credit
from miniclip.zeroshot import SHAPES_TEMPLATES, zeroshot_classifier


# --------------------------------------------------------------------- lesson 5: prompt ensembles

def check_template_ensemble(fn: Callable, model=None, tokenizer=None) -> CheckResult:
    """fn(text_features [K, T, D]) -> classifier [D, K]: prompt ensembling (lesson 05).

    text_features are the raw (unnormalised) text features of K classes x T templates. Normalise each, average
    over the templates, renormalise, and return one unit-length column per class. With a model and its tokenizer
    the check also feeds fn the model's own features and compares with miniclip.zeroshot.zeroshot_classifier.
    """

    def ref(x):
        return F.normalize(F.normalize(x, dim=-1).mean(dim=1), dim=-1).t()

    g = torch.Generator().manual_seed(2)
    inputs = [(torch.randn(K, T, D, generator=g) * (0.2 + 5 * torch.rand(K, T, 1, generator=g)),)
              for K, T, D in ((3, 4, 8), (5, 2, 6), (2, 1, 4))]
    mistakes = {
        "you normalised along the wrong axis: each caption's feature *vector* must have length 1 (dim=-1, over D)":
            lambda x: F.normalize(F.normalize(x, dim=1).mean(dim=1), dim=-1).t(),
        "you normalised along the wrong axis: each caption's feature *vector* (dim=-1) must have length 1":
            lambda x: F.normalize(F.normalize(x, dim=0).mean(dim=1), dim=-1).t(),
        "you renormalised along the wrong axis: each class's mean [D] must have length 1 (dim=-1 of [K, D])":
            lambda x: F.normalize(F.normalize(x, dim=-1).mean(dim=1), dim=0).t(),
        "you forgot to renormalise after averaging (a mean of unit vectors is shorter than 1)":
            lambda x: F.normalize(x, dim=-1).mean(dim=1).t(),
        "you did not normalise each template's feature before averaging (long features then outweigh short ones)":
            lambda x: F.normalize(x.mean(dim=1), dim=-1).t(),
        "you returned [K, D]; the classifier is [D, K], one column per class (transpose it)":
            lambda x: ref(x).t(),
    }
    result = diagnose("template_ensemble", fn, ref, mistakes, inputs)
    if result and model is not None and tokenizer is not None:
        classnames, templates = ["red circle", "blue star", "green heart"], SHAPES_TEMPLATES[:3]
        tokens = tokenizer.encode([t.format(c) for c in classnames for t in templates]).to(model_device(model))
        was_training = model.training
        model.eval()
        with torch.no_grad():
            raw = model.encode_text(tokens).float().view(len(classnames), len(templates), -1).cpu()  # [K, T, D]
        model.train(was_training)
        expected = zeroshot_classifier(model, tokenizer, classnames, templates).cpu()
        same = cmp("template_ensemble", fn(raw), expected, atol=1e-4, rtol=1e-3, verbose=False)
        if not same:
            result = CheckResult("template_ensemble", "wrong", same.max_diff,
                                 f"on the model's features it differs from zeroshot_classifier ({same.hint})")
    print(result)
    return result


# ---------------------------------------------------------------------------- lesson 6: retrieval

RECALL_SEED = 39  # inputs on which every mistake below gives another answer than the reference


def check_retrieval_recall(fn: Callable) -> CheckResult:
    """fn(similarity [N_img, C], caption_image int64 [C], k) -> (image->text, text->image) recall@k in percent.

    Lesson 06. caption_image[c] is the image of caption c; an image may have several captions (every image here
    has at least one). Image -> text: a hit when ANY of the image's captions is among its k best captions.
    Text -> image: a hit when the caption's own image is among its k best images. Compared with
    miniclip.evaluate.retrieval_metrics.
    """

    def ref(sim, caption_image, k):
        m = retrieval_metrics(sim, caption_image, ks=(k,))
        return torch.tensor([m[f"i2t_r{k}"], m[f"t2i_r{k}"]])

    def first_caption_only(sim, caption_image, k):
        n_img = sim.shape[0]
        first = torch.tensor([int((caption_image == i).nonzero()[0]) for i in range(n_img)])
        rank = (sim > sim.gather(1, first[:, None])).sum(dim=1)  # [N_img]
        return torch.tensor([100.0 * (rank < k).float().mean().item(), ref(sim, caption_image, k)[1].item()])

    def caption_weighted(sim, caption_image, k):
        hit = (caption_image[sim.topk(k, dim=1).indices] == torch.arange(sim.shape[0])[:, None]).any(dim=1)  # [N_img]
        return torch.tensor([100.0 * hit[caption_image].float().mean().item(), ref(sim, caption_image, k)[1].item()])

    g = torch.Generator().manual_seed(RECALL_SEED)
    inputs = []
    for n_img, per_image, k in ((6, (1, 3, 2, 2, 3, 1), 2), (10, (2,) * 10, 3), (8, (1,) * 8, 1)):
        caption_image = torch.repeat_interleave(torch.arange(n_img), torch.tensor(per_image))  # [C]
        truth = F.one_hot(caption_image, n_img).t().float()  # [N_img, C]
        inputs.append((torch.randn(n_img, len(caption_image), generator=g) + 1.2 * truth, caption_image, k))
    mistakes = {
        "the two directions are swapped: return (image->text, text->image)":
            lambda s, c, k: ref(s, c, k).flip(0),
        "you returned fractions; recall@k here is in percent (multiply by 100)":
            lambda s, c, k: ref(s, c, k) / 100,
        "your ranks are off by one (with 0-based ranks a hit is rank < k): that is recall@(k-1)":
            lambda s, c, k: ref(s, c, k - 1) if k > 1 else torch.zeros(2),
        "image->text counts only the image's first caption; a hit is ANY of its captions among the k best":
            first_caption_only,
        "image->text is averaged over the captions (an image with 3 captions counts 3 times): average over images":
            caption_weighted,
        "your ranks are off by one (with 0-based ranks a hit is rank < k, not rank <= k): that is recall@(k+1)":
            lambda s, c, k: ref(s, c, k + 1),
    }
    result = diagnose("retrieval_recall", lambda s, c, k: _as_pair(fn(s, c, k)), ref, mistakes, inputs)
    print(result)
    return result


def _as_pair(value):
    """(i2t, t2i) as two numbers, two 0-d tensors or a tensor [2] -> a float tensor [2] (None stays None)."""
    if value is None:
        return None
    if isinstance(value, dict):
        raise TypeError("return a pair (image->text, text->image), not a dict")
    return torch.stack([torch.as_tensor(v, dtype=torch.float32).reshape(()) for v in value])


# -------------------------------------------------------------------- lessons 7 and 8: the probes

def check_choice_credit(fn: Callable) -> CheckResult:
    """fn(scores [N, M], answer int [N]) -> credit float [N]: 1 when the answer scores highest, 1/t when t options
    tie for the highest score, else 0 (lesson 07). Ties must share the credit: a model that gives every option the
    same score has learned nothing, and must score chance, not 100%."""

    def argmax_credit(scores, answer):
        return (torch.as_tensor(scores).argmax(dim=1) == torch.as_tensor(answer)).float()

    def full_tie_credit(scores, answer):
        scores = torch.as_tensor(scores)
        best = scores.max(dim=1).values
        return (scores[torch.arange(len(scores)), torch.as_tensor(answer)] == best).float()

    g = torch.Generator().manual_seed(7)
    tied = torch.tensor([[0.5, 0.5, 0.1], [0.2, 0.9, 0.9], [0.3, 0.3, 0.3], [1.0, 0.0, 0.0], [0.0, 0.4, 0.2]])
    inputs = [(tied, torch.tensor([0, 1, 2, 1, 1])), (tied, torch.tensor([1, 2, 0, 0, 2])),
              (torch.randn(6, 5, generator=g), torch.tensor([0, 1, 2, 3, 4, 0]))]
    mistakes = {
        "you used argmax: on a tie it picks the first option, so a model that scores everything the same gets full "
        "marks whenever the answer comes first. With t options tied for the top, the answer gets 1/t": argmax_credit,
        "a tie gives full credit to every tied option; with t options tied for the top, the answer gets 1/t":
            full_tie_credit,
    }
    result = diagnose("choice_credit", fn, lambda s, a: torch.as_tensor(choice_credit(s, a)), mistakes, inputs)
    print(result)
    return result


def check_swap_relation(fn: Callable) -> CheckResult:
    """fn(caption) -> the caption with the two objects of its relation swapped, or None without a relation
    (lesson 08; the hard negative of NegCLIP). "a photo of " and a final full stop stay where they are."""
    cases = ["a red circle to the left of a blue star", "a photo of a small green heart above a large yellow cross",
             "a purple square below an orange triangle.", "a photo of a red cross to the right of a blue heart.",
             "two red stars", "a red circle and a blue star"]
    mistakes = {
        "you changed the relation word instead of swapping the objects: 'B right of A' says the same as 'A left of "
        "B', a true caption, not a negative": _replace_relation,
        "'a photo of ' moved with the first object; keep the prefix at the start": _swap_moving_prefix,
    }
    for caption in cases:
        try:
            got = fn(caption)
        except NotImplementedError:
            result = CheckResult("swap_relation", "wrong", hint="not implemented yet: replace the `raise NotImplementedError` with your code")
            break
        expected = swap_relation(caption)
        if got != expected:
            hint = f"swap_relation({caption!r}) gave {got!r}, expected {expected!r}"
            if expected is None:
                hint += " (no relation word: return None)"
            for why, mistake in mistakes.items():
                if got is not None and got == mistake(caption):
                    hint += f". It looks like {why}"
            result = CheckResult("swap_relation", "wrong", hint=hint)
            break
    else:
        result = CheckResult("swap_relation", "exact")
    print(result)
    return result


def _replace_relation(caption: str) -> str | None:
    """The mistake 'relation word replaced': 'A left of B' -> 'A right of B', a true caption again."""
    for rel in RELATIONS:
        if f" {rel} " in caption:
            return caption.replace(f" {rel} ", f" {INVERSE[rel]} ", 1)
    return None


def _swap_moving_prefix(caption: str) -> str | None:
    """The mistake 'prefix moved': objects swapped with "a photo of " still attached to the first one."""
    stop = "." if caption.endswith(".") else ""
    body = caption[: len(caption) - len(stop)]
    for rel in RELATIONS:
        if f" {rel} " in body:
            left, right = body.split(f" {rel} ", 1)
            return f"{right} {rel} {left}{stop}"
    return None


# ------------------------------------------------------------------------------ lesson 10: SigLIP

def check_siglip_loss(fn: Callable) -> CheckResult:
    """fn(logits [N, N], t, b) -> scalar: SigLIP's pairwise sigmoid loss (Zhai et al., 2023; lesson 10).

    logits are the cosine similarities of N images (rows) and N texts (columns); the pair (i, j) gets the
    logit z = t * logits[i, j] + b and the label +1 when i == j (a match), -1 otherwise; its loss is
    -log sigmoid(label * z). The loss sums over each image's N texts and averages over the N images.
    Every pair is its own binary question: no softmax over the batch, so no all-gather of the whole batch.
    """

    def labels(cos):  # for the mistakes
        return 2 * torch.eye(cos.shape[0]) - 1  # +1 on the diagonal, -1 elsewhere

    g = torch.Generator().manual_seed(4)
    inputs = [(torch.tanh(torch.randn(n, n, generator=g) + 2 * torch.eye(n)), t, b)
              for n, t, b in ((4, 10.0, -10.0), (7, 3.7, 0.5), (16, 1.0, -2.0))]
    mistakes = {
        "you averaged over all N x N pairs; sum over each image's texts, then average over the N images (divide by N)":
            lambda c, t, b: -F.logsigmoid(labels(c) * (t * c + b)).mean(),
        "the negatives' label is 0 inside logsigmoid(label * z); it must be -1 (a negative's loss is -log sigmoid(-z))":
            lambda c, t, b: -F.logsigmoid(torch.eye(c.shape[0]) * (t * c + b)).sum(dim=1).mean(),
        "the labels are flipped: +1 on the diagonal (the matching pairs), -1 elsewhere":
            lambda c, t, b: -F.logsigmoid(-labels(c) * (t * c + b)).sum(dim=1).mean(),
        "you forgot the bias b (z = t * cosine + b)":
            lambda c, t, b: -F.logsigmoid(labels(c) * (t * c)).sum(dim=1).mean(),
        "the bias is added before scaling: z = t * cosine + b, not t * (cosine + b)":
            lambda c, t, b: -F.logsigmoid(labels(c) * (t * (c + b))).sum(dim=1).mean(),
        "the sign is missing: the loss is -log sigmoid(...) (log sigmoid is negative)":
            lambda c, t, b: F.logsigmoid(labels(c) * (t * c + b)).sum(dim=1).mean(),
        "that is CLIP's softmax loss; SigLIP treats every pair as its own sigmoid (binary) question":
            lambda c, t, b: clip_loss(t * c + b),
    }
    result = diagnose("siglip_loss", fn, siglip_loss, mistakes, inputs)
    print(result)
    return result
