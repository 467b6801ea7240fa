"""Checkers for the notebook exercises, in the spirit of nn-zero-to-hero's `cmp`.

    from miniclip.course.checkers import cmp
    cmp("loss", my_loss, miniclip.clip_loss(logits))     # prints: loss | exact   (or close, or how far off)

Each `check_*` function runs a student's function on several inputs, compares it with the package's own
implementation, and when it is wrong, recognises the usual mistakes and says which one it looks like.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


class CheckResult:
    """The verdict of a check: truthy when right, printed as one line."""

    def __init__(self, name: str, status: str, max_diff: float = 0.0, hint: str = ""):
        self.name, self.status, self.max_diff, self.hint = name, status, max_diff, hint

    @property
    def ok(self) -> bool:
        return self.status in ("exact", "close")

    def __bool__(self):
        return self.ok

    def __repr__(self):
        if self.status == "exact":
            return f"{self.name:<20} | exact"
        if self.status == "close":
            return f"{self.name:<20} | close (max diff {self.max_diff:.1e})"
        return f"{self.name:<20} | WRONG: {self.hint}"


def cmp(name: str, got, expected, atol: float = 1e-5, rtol: float = 1e-4, verbose: bool = True) -> CheckResult:
    """Compare two tensors (or numbers): exact, close (within atol + rtol * |expected|), or how far off."""
    expected = torch.as_tensor(expected).detach().float()
    if got is None:
        result = CheckResult(name, "wrong", hint="your function returned None (did you forget `return`?)")
    else:
        got = torch.as_tensor(got).detach().float()
        if got.shape != expected.shape:
            result = CheckResult(name, "wrong", hint=f"shape {list(got.shape)}, expected {list(expected.shape)}")
        elif torch.equal(got, expected):
            result = CheckResult(name, "exact")
        else:
            diff = (got - expected).abs().max().item()
            close = torch.allclose(got, expected, atol=atol, rtol=rtol)
            result = CheckResult(name, "close" if close else "wrong", diff, f"max diff {diff:.3g}")
    if verbose:
        print(result)
    return result


def _diagnose(name: str, student: Callable, reference: Callable, mistakes: dict[str, Callable], inputs: list) -> CheckResult:
    """Run student and reference on every input; if they disagree, name the mistake whose output matches."""
    worst = CheckResult(name, "exact")
    for args in inputs:
        try:
            got = student(*args)
        except NotImplementedError:
            return CheckResult(name, "wrong", hint="not implemented yet: replace the `raise NotImplementedError` with your code")
        r = cmp(name, got, reference(*args), verbose=False)
        if not r:
            for hint, mistake in mistakes.items():
                if got is not None and cmp(name, got, mistake(*args), verbose=False):
                    return CheckResult(name, "wrong", r.max_diff, f"{r.hint}. It looks like {hint}")
            return r
        if r.status == "close":
            worst = r
    return worst


def _logits_inputs(n_cases: int = 3) -> list:
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(n, n, generator=g) * 3,) for n in (4, 7, 16)[:n_cases]]


def check_clip_loss(fn: Callable) -> CheckResult:
    """fn(logits_per_image [N, N]) -> scalar: the symmetric cross-entropy of CLIP."""
    from miniclip.loss import clip_loss

    def targets(logits):
        return torch.arange(logits.shape[0])

    mistakes = {
        "you kept only the image->text term (the loss is symmetric: average it with text->image)":
            lambda l: F.cross_entropy(l, targets(l)),
        "you kept only the text->image term (average it with image->text)":
            lambda l: F.cross_entropy(l.t(), targets(l)),
        "you summed the two directions instead of averaging them":
            lambda l: F.cross_entropy(l, targets(l)) + F.cross_entropy(l.t(), targets(l)),
        "the targets are not the diagonal (row i's true caption is column i: targets = arange(N))":
            lambda l: (F.cross_entropy(l, targets(l).flip(0)) + F.cross_entropy(l.t(), targets(l).flip(0))) / 2,
        "you applied softmax before cross_entropy (F.cross_entropy takes raw logits)":
            lambda l: (F.cross_entropy(l.softmax(1), targets(l)) + F.cross_entropy(l.t().softmax(1), targets(l))) / 2,
    }
    result = _diagnose("clip_loss", fn, clip_loss, mistakes, _logits_inputs())
    print(result)
    return result


def check_similarity(fn: Callable) -> CheckResult:
    """fn(image_features [N, D], text_features [M, D], scale) -> logits [N, M]: scaled cosine similarities."""

    def ref(a, b, s):
        return s * F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).t()

    g = torch.Generator().manual_seed(1)
    inputs = [(torch.randn(5, 8, generator=g) * 2, torch.randn(6, 8, generator=g), 14.3),
              (torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g) * 5, 100.0)]
    mistakes = {
        "you did not normalise the features (cosine similarity divides by the lengths)":
            lambda a, b, s: s * a @ b.t(),
        "you normalised along the wrong axis (each feature *vector* must have length 1: dim=-1)":
            lambda a, b, s: s * F.normalize(a, dim=0) @ F.normalize(b, dim=0).t(),
        "the temperature is applied the wrong way (multiply by the scale 1/T, don't divide)":
            lambda a, b, s: F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).t() / s,
        "you forgot the scale (the logits are scale * cosine)":
            lambda a, b, s: F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).t(),
    }
    result = _diagnose("similarity", fn, ref, mistakes, inputs)
    print(result)
    return result


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
    result = _diagnose("template_ensemble", fn, ref, mistakes, inputs)
    if result and model is not None and tokenizer is not None:
        from miniclip.encode import model_device
        from miniclip.zeroshot import SHAPES_TEMPLATES, zeroshot_classifier

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


def check_retrieval_recall(fn: Callable) -> CheckResult:
    """fn(similarity [N_img, C], caption_image int64 [C], k) -> (image->text, text->image) recall@k in percent.

    Lesson 06. caption_image[c] is the image of caption c; an image may have several captions (every image here
    has at least one). Image -> text: a hit when ANY of the image's captions is among its k best captions.
    Text -> image: a hit when the caption's own image is among its k best images. Compared with
    miniclip.evaluate.retrieval_metrics.
    """
    from miniclip.evaluate import retrieval_metrics

    def ref(sim, caption_image, k):
        m = retrieval_metrics(sim, caption_image, ks=(k,))
        return torch.tensor([m[f"i2t_r{k}"], m[f"t2i_r{k}"]])

    def first_caption_only(sim, caption_image, k):
        n_img = sim.shape[0]
        first = torch.tensor([int((caption_image == i).nonzero()[0]) for i in range(n_img)])
        rank = (sim > sim.gather(1, first[:, None])).sum(dim=1)  # [N_img]
        return torch.tensor([100.0 * (rank < k).float().mean().item(), ref(sim, caption_image, k)[1].item()])

    g = torch.Generator().manual_seed(3)
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
        "image->text counts only the image's first caption; a hit is ANY of its captions among the k best":
            first_caption_only,
        "your ranks are off by one (with 0-based ranks a hit is rank < k, not rank <= k): that is recall@(k+1)":
            lambda s, c, k: ref(s, c, k + 1),
    }
    result = _diagnose("retrieval_recall", lambda s, c, k: _as_pair(fn(s, c, k)), ref, mistakes, inputs)
    print(result)
    return result


def _as_pair(value):
    """(i2t, t2i) as two numbers, two 0-d tensors or a tensor [2] -> a float tensor [2] (None stays None)."""
    if value is None:
        return None
    if isinstance(value, dict):
        raise TypeError("return a pair (image->text, text->image), not a dict")
    return torch.stack([torch.as_tensor(v, dtype=torch.float32).reshape(()) for v in value])


def check_siglip_loss(fn: Callable) -> CheckResult:
    """fn(logits [N, N], t, b) -> scalar: SigLIP's pairwise sigmoid loss (Zhai et al., 2023; lesson 08).

    logits are the cosine similarities of N images (rows) and N texts (columns); the pair (i, j) gets the
    logit z = t * logits[i, j] + b and the label +1 when i == j (a match), -1 otherwise; its loss is
    -log sigmoid(label * z). The loss sums over each image's N texts and averages over the N images.
    Every pair is its own binary question: no softmax over the batch, so no all-gather of the whole batch.
    """
    from miniclip.loss import clip_loss

    def labels(cos):
        return 2 * torch.eye(cos.shape[0]) - 1  # +1 on the diagonal, -1 elsewhere

    def ref(cos, t, b):
        return -F.logsigmoid(labels(cos) * (t * cos + b)).sum(dim=1).mean()

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
    result = _diagnose("siglip_loss", fn, ref, mistakes, inputs)
    print(result)
    return result


def check_choice_credit(fn: Callable) -> CheckResult:
    """fn(scores [N, M], answer int [N]) -> credit float [N]: 1 when the answer scores highest, 1/t when t options
    tie for the highest score, else 0 (lesson 07). Ties must share the credit: a model that gives every option the
    same score has learned nothing, and must score chance, not 100%."""
    from miniclip.probes import choice_credit

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
    result = _diagnose("choice_credit", fn, lambda s, a: torch.as_tensor(choice_credit(s, a)), mistakes, inputs)
    print(result)
    return result


def check_swap_relation(fn: Callable) -> CheckResult:
    """fn(caption) -> the caption with the two objects of its relation swapped, or None without a relation
    (lesson 07; the hard negative of NegCLIP). "a photo of " and a final full stop stay where they are."""
    from miniclip.data.shapes import swap_relation

    cases = ["a red circle to the left of a blue star", "a photo of a small green heart above a large yellow cross",
             "a purple square below an orange triangle.", "a photo of a red cross to the right of a blue heart.",
             "two red stars", "a red circle and a blue star"]
    mistakes = {
        "you changed the relation word instead of swapping the objects: 'B right of A' says the same as 'A left of "
        "B', a true caption, not a negative": lambda c: _replace_relation(c),
        "'a photo of ' moved with the first object; keep the prefix at the start": lambda c: _swap_keeping_nothing(c),
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


_OPPOSITE = {" to the left of ": " to the right of ", " to the right of ": " to the left of ", " above ": " below ",
             " below ": " above "}


def _replace_relation(caption: str):
    for rel, opposite in _OPPOSITE.items():
        if rel in caption:
            return caption.replace(rel, opposite, 1)
    return None


def _swap_keeping_nothing(caption: str):
    stop = "." if caption.endswith(".") else ""
    body = caption[: len(caption) - len(stop)]
    for rel in _OPPOSITE:
        if rel in body:
            left, right = body.split(rel, 1)
            return f"{right}{rel}{left}{stop}"
    return None


def check_to_context(fn: Callable, tokenizer) -> CheckResult:
    """fn(ids, context_length, start_id, end_id, pad_id) -> the row of exactly context_length ids the text tower reads.

    ids: a caption's BPE ids (no special tokens). Checked against what `tokenizer.encode` produces for the same
    captions, and on short contexts: [start] + ids cut to fit + [end] + padding; truncation must keep <end>.
    """
    from miniclip.course.lessons import bpe_ids

    L, s, e, p = tokenizer.context_length, tokenizer.start_id, tokenizer.end_id, tokenizer.pad_id
    texts = ["a red circle", "", "two blue stars above a green heart",
             " ".join(["a large purple triangle and a small orange cross"] * 8)]  # the last one must be cut
    expected = {(tuple(bpe_ids(tokenizer, t)), L): tokenizer.encode(t)[0].tolist() for t in texts}
    for ids, n in (((41, 42, 43, 44, 45, 46), 5), ((), 4), ((41, 42), 4), ((41, 42, 43), 4)):
        row = [s] + list(ids)[: n - 2] + [e]
        expected[(ids, n)] = row + [p] * (n - len(row))
    inputs = [(list(ids), n, s, e, p) for ids, n in expected]

    def ref(ids, n, s_, e_, p_):
        return expected[(tuple(ids), n)]

    def cut_after_end(ids, n, s_, e_, p_):
        row = ([s_] + list(ids) + [e_])[:n]
        return row + [p_] * (n - len(row))

    def no_start(ids, n, s_, e_, p_):
        row = list(ids)[: n - 1] + [e_]
        return row + [p_] * (n - len(row))

    def cut_one_short(ids, n, s_, e_, p_):
        row = [s_] + list(ids)[: n - 3] + [e_]
        return row + [p_] * (n - len(row))

    mistakes = {
        "you truncated after adding <end>: a long caption loses its end token, and the text tower reads its "
        "feature at <end> (keep context_length - 2 caption ids, then add <end>)": cut_after_end,
        "the row does not begin with <start>": no_start,
        "you kept one caption id too few (room for the caption is context_length - 2)": cut_one_short,
    }
    result = _diagnose("to_context", fn, ref, mistakes, inputs)
    print(result)
    return result


def check_block_parameters(fn: Callable) -> CheckResult:
    """fn(width, mlp_ratio) -> the number of parameters of one Transformer block (miniclip.model.Block)."""
    from miniclip.model import Block

    def ref(w, r):
        return sum(p.numel() for p in Block(w, 4, r, "gelu").parameters())

    inputs = [(64, 4), (256, 4), (48, 2)]
    mistakes = {
        "you counted the weight matrices only (each Linear has a bias, each LayerNorm a weight and a bias)":
            lambda w, r: (4 + 2 * r) * w * w,
        "you forgot the biases of the Linear layers": lambda w, r: (4 + 2 * r) * w * w + 4 * w,
        "you forgot the two LayerNorms (a weight and a bias of `width` each)": lambda w, r: (4 + 2 * r) * w * w + (5 + r) * w,
        "the attention has four width x width maps: queries, keys, values (qkv) and the output projection":
            lambda w, r: (3 + 2 * r) * w * w + (8 + r) * w,
        "the MLP is width -> mlp_ratio * width -> width: two matrices of mlp_ratio * width^2":
            lambda w, r: 6 * w * w + 10 * w,
        "you wrote mlp_ratio = 4 into the formula; use the argument": lambda w, r: 12 * w * w + 13 * w,
    }
    result = _diagnose("block parameters", fn, ref, mistakes, inputs)
    print(result)
    return result


def check_causal_mask(fn: Callable) -> CheckResult:
    """fn(T) -> bool [T, T], True where query i may attend to key j: itself and the tokens before it (j <= i)."""

    def ref(t):
        return torch.ones(t, t).tril().bool()

    mistakes = {
        "it is transposed: row i (a query) must see the columns j <= i, the tokens before it, not after":
            lambda t: torch.ones(t, t).triu().bool(),
        "each token must also see itself (the diagonal is True)": lambda t: torch.ones(t, t).tril(-1).bool(),
        "the mask is inverted: True should mean 'may attend'": lambda t: ~torch.ones(t, t).tril().bool(),
    }
    result = _diagnose("causal mask", fn, ref, mistakes, [(1,), (5,), (12,)])
    print(result)
    return result


def check_lr_schedule(fn: Callable) -> CheckResult:
    """fn(step, cfg) -> the learning rate at `step`: linear warmup to cfg.lr over cfg.warmup_steps, then cosine to 0
    at cfg.steps (miniclip.train.lr_at). cfg has .lr, .warmup_steps and .steps."""
    import math

    from miniclip.train import TrainConfig, lr_at

    def schedule(f):
        return lambda cfg: torch.tensor([float(f(s, cfg)) for s in range(cfg.steps + 1)], dtype=torch.float64)

    def cosine(cfg, s, start):
        progress = min(1.0, (s - start) / max(1, cfg.steps - start))
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))

    inputs = [(TrainConfig(lr=4e-3, warmup_steps=10, steps=50),), (TrainConfig(lr=1e-3, warmup_steps=3, steps=20),)]
    mistakes = {
        "the warmup is one step late: at step 0 the rate is already lr / warmup_steps, reaching lr at step "
        "warmup_steps - 1 (use step + 1)": lambda c: schedule(
            lambda s, c: c.lr * s / c.warmup_steps if s < c.warmup_steps else cosine(c, s, c.warmup_steps))(c),
        "the cosine should start after the warmup: progress = (step - warmup_steps) / (steps - warmup_steps)":
            lambda c: schedule(lambda s, c: c.lr * (s + 1) / c.warmup_steps if s < c.warmup_steps else cosine(c, s, 0))(c),
        "there is no warmup (the rate should climb linearly from lr / warmup_steps to lr first)":
            lambda c: schedule(lambda s, c: cosine(c, s, 0))(c),
        "the decay is linear; it should follow half a cosine, 0.5 * (1 + cos(pi * progress))": lambda c: schedule(
            lambda s, c: c.lr * (s + 1) / c.warmup_steps if s < c.warmup_steps
            else c.lr * (1 - min(1.0, (s - c.warmup_steps) / (c.steps - c.warmup_steps))))(c),
    }
    result = _diagnose("lr schedule", schedule(fn), schedule(lr_at), mistakes, inputs)
    print(result)
    return result


def check_num_image_tokens(fn: Callable) -> CheckResult:
    """fn(image_size, patch_size) -> the length of the token sequence of the image tower: one token per patch,
    plus the class token (miniclip.CLIPConfig.num_patches + 1)."""
    from miniclip.config import CLIPConfig

    def ref(s, p):
        return CLIPConfig(image_size=s, patch_size=p).num_patches + 1

    mistakes = {
        "you forgot the class token (token 0, whose output becomes the image feature)": lambda s, p: (s // p) ** 2,
        "the patches form a grid: (image_size / patch_size) patches per side, squared": lambda s, p: s // p + 1,
        "you counted pixels per patch; count patches (image_size / patch_size per side)": lambda s, p: p * p + 1,
    }
    result = _diagnose("image tokens", fn, ref, mistakes, [(32, 8), (64, 8), (128, 16), (224, 32)])
    print(result)
    return result


def check_weight_decay(fn: Callable) -> CheckResult:
    """fn(name, parameter) -> True if AdamW should apply weight decay to this parameter of a MiniCLIP.

    Compared with the optimiser groups of miniclip.train.param_groups over every parameter of two models.
    """
    from miniclip.config import CLIPConfig
    from miniclip.model import MiniCLIP
    from miniclip.train import param_groups

    models = [MiniCLIP(CLIPConfig.preset("shapes-tiny")), MiniCLIP(CLIPConfig(stem_channels=(), vision_layers=1))]

    def ref(model):
        decayed = {id(p) for g in param_groups(model, 0.1, 1.0) if g["weight_decay"] > 0 for p in g["params"]}
        return torch.tensor([id(p) in decayed for _, p in model.named_parameters()])

    def rule(f):
        return lambda model: torch.tensor([bool(f(n, p)) for n, p in model.named_parameters()])

    mistakes = {
        "every parameter decays; decay only the weight matrices (not biases, LayerNorms, embeddings or the "
        "temperature: shrinking those towards 0 changes what the model computes, not just its size)":
            rule(lambda n, p: True),
        "embedding tables (token, positional) are 2-D but are not decayed: they are lookup tables, not maps":
            rule(lambda n, p: p.ndim >= 2),
        "besides the biases, LayerNorm weights, embedding tables and the temperature are not decayed either: "
        "only weight matrices and convolution kernels":
            rule(lambda n, p: not n.endswith("bias")),
        "nothing decays; the weight matrices (and convolution kernels) should": rule(lambda n, p: False),
    }
    result = _diagnose("weight decay", rule(fn), ref, mistakes, [(m,) for m in models])
    print(result)
    return result
