"""Claims are code: a sentence of a lesson that states a number or a direction is checked where it is made.

    claim(zero_shot < probe, f"the linear probe ({probe:.0%}) beats zero-shot ({zero_shot:.0%})")

prints the sentence with a tick when it holds. When it does not: at the smoke and rehearsal lessons (CI's tiny
sizes, where numbers mean nothing) it prints a cross and goes on; at every other lesson it raises ClaimFailed, so
a notebook whose prose drifts from what its cells compute stops at the claim instead of teaching something false.

`make claims` runs every notebook at the laptop lesson with MINICLIP_CLAIMS_LOG set: each claim is then appended
to that file (one JSON line: notebook, text, held) and does not raise, and `python -m miniclip.course.claims
summary LOG` prints `N claims checked, M failed` (exit status 1 when M > 0).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

LOG_VARIABLE = "MINICLIP_CLAIMS_LOG"


class ClaimFailed(AssertionError):
    """A sentence of a lesson that the lesson's own numbers contradict."""


def _lesson_name() -> str:
    """The lesson the notebook runs at, as start_lesson chose it (MINICLIP_SMOKE=1 or MINICLIP_LESSON)."""
    if os.environ.get("MINICLIP_SMOKE") == "1" and "MINICLIP_LESSON" not in os.environ:
        return "smoke"
    return os.environ.get("MINICLIP_LESSON", "laptop")


def claim(holds, text: str, lesson: str | None = None) -> bool:
    """Check one claim of a lesson: print `text` with a tick or a cross; raise ClaimFailed when it is false
    (except at the smoke lesson, or while `make claims` logs every claim). Returns whether it holds."""
    holds = bool(holds)
    lesson = lesson or _lesson_name()
    print(f"{'✓' if holds else '✗ NOT TRUE HERE:'} {text}")
    log = os.environ.get(LOG_VARIABLE)
    if log:
        with open(log, "a") as f:
            f.write(json.dumps({"notebook": os.environ.get("MINICLIP_NOTEBOOK", ""), "lesson": lesson,
                                "text": text, "held": holds}) + "\n")
    elif not holds and lesson not in ("smoke", "rehearsal"):  # CI sizes: the numbers mean nothing
        raise ClaimFailed(f"this lesson says {text!r}, but its own numbers say otherwise; fix the sentence or the code")
    return holds


def summary(log) -> tuple[int, int]:
    """(claims checked, claims failed) in a MINICLIP_CLAIMS_LOG file; prints each failed claim."""
    rows = []
    if Path(log).is_file():
        rows = [json.loads(line) for line in Path(log).read_text().splitlines() if line.strip()]
    else:
        print(f"{log}: no such file; a run with MINICLIP_CLAIMS_LOG={log} writes it (see `make claims`)")
    failed = [r for r in rows if not r["held"]]
    for r in failed:
        print(f"FAILED {r['notebook']}: {r['text']}")
    print(f"{len(rows)} claims checked, {len(failed)} failed")
    return len(rows), len(failed)


def main(argv=None) -> int:
    """`python -m miniclip.course.claims summary LOG`: exit 1 when a claim failed (or none was checked)."""
    parser = argparse.ArgumentParser(prog="python -m miniclip.course.claims", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["summary"])
    parser.add_argument("log")
    args = parser.parse_args(argv)
    checked, failed = summary(args.log)
    return 1 if failed or not checked else 0


if __name__ == "__main__":
    sys.exit(main())
