"""Checking an exercise, in the spirit of nn-zero-to-hero's `cmp`.

    from miniclip.course.checkers import cmp
    cmp("loss", my_loss, miniclip.clip_loss(logits))     # prints: loss | exact   (or close, or how far off)

The `check_*` functions of each lesson (miniclip.course.check_lessons_1_4 and check_lessons_5_8) run a student's
function on several inputs, compare it with the library's own implementation through `diagnose`, and when it is
wrong, recognise the usual mistakes and say which one it looks like.
"""
from __future__ import annotations

from typing import Callable

import torch


class CheckResult:
    """The verdict of a check: truthy when right, printed as one line."""

    def __init__(self, name: str, status: str, max_diff: float = 0.0, hint: str = ""):
        self.name, self.status, self.max_diff, self.hint = name, status, max_diff, hint

    @property
    def ok(self) -> bool:
        """True when the answer is exact or close enough."""
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


def diagnose(name: str, student: Callable, reference: Callable, mistakes: dict[str, Callable], inputs: list) -> CheckResult:
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
