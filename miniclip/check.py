"""Checkers for the notebook exercises, in the spirit of nn-zero-to-hero's `cmp`.

    from miniclip.check import cmp
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
