"""Predict, then measure: the student commits to an outcome before the cell that measures it.

    ask("Train with the image->text loss only. What happens to text->image R@1?", ["rises", "falls", "stays"])
    # BEGIN SOLUTION
    prediction = "falls"          # the student's answer (the student notebook has a stub here)
    # END SOLUTION
    ... the cells that measure it ...
    reveal(prediction, measured="falls", why=f"R@1 went from {before:.0%} to {after:.0%}")

`measured` is computed by the notebook from its own numbers, never typed in, so the verdict cannot drift from
what the cells produce. A wrong prediction is not an error: the point is the surprise, so reveal() only prints.
"""
from __future__ import annotations

_QUESTIONS: dict[str, list[str]] = {}  # option lists by question, so that reveal() can check an answer's spelling


def ask(question: str, options: list[str]) -> None:
    """Print a question and the answers to choose from (write one of them into `prediction`)."""
    _QUESTIONS[question] = list(options)
    print(f"Predict before you run the next cells: {question}")
    print("Write one of: " + ", ".join(repr(o) for o in options))


def reveal(prediction, measured: str, why: str, options: list[str] | None = None) -> bool:
    """Compare a prediction with what was measured; print both and the reason. Returns whether they agree.

    options: the allowed answers (default: those of the last ask()); an answer outside them is reported, not judged.
    """
    options = options if options is not None else (list(_QUESTIONS.values())[-1] if _QUESTIONS else None)
    if options is not None and measured not in options:
        raise ValueError(f"reveal: the measured outcome {measured!r} is not one of the options {options}")
    print(f"Measured: {measured}. {why}")
    if prediction is None or (options is not None and prediction not in options):
        choices = f" (one of {', '.join(repr(o) for o in options)})" if options else ""
        print(f"Your prediction {prediction!r} is not one of the answers{choices}: write it before you measure.")
        return False
    agree = prediction == measured
    print(f"You predicted {prediction!r}: " + ("right." if agree else "not this time; the reason above is why."))
    return agree
