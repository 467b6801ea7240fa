"""Student notebooks: the course notebooks with every solution cut out.

    python -m miniclip.course.student build notebooks/ --out student/

In a solution notebook the answer to an exercise sits between two marker lines:

    # BEGIN SOLUTION
    loss = (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets)) / 2
    # END SOLUTION

The student version keeps everything else and replaces the lines between the markers (markers included)
with a stub that raises NotImplementedError, indented like the solution was. Outputs are cleared, and the
"Open in Colab" badge opens the student version: its path notebooks/NAME.ipynb becomes student/NAME.ipynb.
The repository commits student/ (what a student opens); tests/test_rehearsal.py fails when it is out of date.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from miniclip.checkpoint import atomic_write_text

BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
STUB = 'raise NotImplementedError("Exercise: write your solution here")'
STUDENT_FOLDER = "student"  # where the repository keeps the student notebooks (what `make student` writes)
BADGE = re.compile(r"(colab\.research\.google\.com/github/[^)\s]*?/)notebooks/")  # a Colab link into notebooks/


def strip_solutions(source: str) -> str:
    """Replace each BEGIN/END SOLUTION block of a cell's source with an indented NotImplementedError stub."""
    out, inside, indent = [], False, ""
    for line in source.splitlines(keepends=True):
        stripped = line.strip()
        if stripped.startswith(BEGIN):
            if inside:
                raise ValueError(f"nested {BEGIN!r}")
            inside, indent = True, re.match(r"\s*", line).group(0)
            out.append(f"{indent}# YOUR CODE HERE\n{indent}{STUB}\n")
        elif stripped.startswith(END):
            if not inside:
                raise ValueError(f"{END!r} without {BEGIN!r}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{BEGIN!r} without {END!r}")
    return "".join(out)


def student_notebook(nb: dict) -> dict:
    """A copy of a notebook (nbformat 4 JSON) with solutions stubbed, outputs cleared and Colab badges pointing
    at STUDENT_FOLDER."""
    nb = json.loads(json.dumps(nb))
    for cell in nb["cells"]:
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] == "markdown":
            cell["source"] = BADGE.sub(rf"\g<1>{STUDENT_FOLDER}/", src).splitlines(keepends=True)
        elif cell["cell_type"] == "code":
            cell["source"] = strip_solutions(src).splitlines(keepends=True)
            cell["outputs"], cell["execution_count"] = [], None
    return nb


def build(src_dir, out_dir) -> list[Path]:
    """Write the student version of every notebook in src_dir into out_dir; returns the paths written."""
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    notebooks = sorted(src_dir.glob("*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"no .ipynb files in {src_dir}")
    written = []
    for path in notebooks:
        try:
            nb = student_notebook(json.loads(path.read_text(encoding="utf-8")))
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from e
        target = out_dir / path.name
        atomic_write_text(target, json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
        written.append(target)
    return written


def main(argv=None) -> int:
    """`python -m miniclip.course.student build SRC --out DIR`; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m miniclip.course.student", description="Build student notebooks.")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="write student notebooks with the solutions cut out")
    b.add_argument("src", help="folder of solution notebooks")
    b.add_argument("--out", required=True, help="folder for the student notebooks")
    args = parser.parse_args(argv)
    try:
        for path in build(args.src, args.out):
            print(path)
    except (OSError, ValueError) as e:  # a wrong folder or a damaged notebook: one line, not a traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
