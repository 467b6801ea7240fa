"""Where the course lives: one repository URL, and the command that points the whole course at a fork.

pyproject.toml's `[project.urls] Repository` holds the URL. The first two cells of every notebook repeat it:
the "Open in Colab" badge (https://colab.research.google.com/github/OWNER/NAME/blob/main/notebooks/FILE.ipynb;
student/FILE.ipynb in student/) and the setup cell's `REPO = "https://github.com/OWNER/NAME"`, from which Colab
installs miniclip (the variable MINICLIP_REPO, when set, wins: a fork works before its badges are changed).
tests/test_colab.py checks that they all agree. A fork's owner points every one of them at the fork at once:

    python -m miniclip.course.setup set-url https://github.com/YOU/miniclip

The setup cell itself cannot import anything from miniclip (it installs it), so its install code is in the cell.
This module edits text files only and imports only the standard library.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository root, when run from a clone
BRANCH = "main"  # the branch the badges open
GITHUB = re.compile(r"https://github\.com/([\w.-]+/[\w.-]+)")  # group 1: "OWNER/NAME"
PYPROJECT_URL = re.compile(r'^Repository = "([^"]*)"', re.M)  # the line in [project.urls]
SETUP_REPO = re.compile(r'^REPO = "([^"]*)"', re.M)  # the line in each notebook's setup cell
PLACEHOLDER_NOTE = re.compile(r'^(Repository = "[^"]*")\s*#.*placeholder.*$', re.M)  # pyproject's note, until set
BADGE = re.compile(r"\(https://colab\.research\.google\.com/github/[^)\s]+\)")  # a badge's link, in parentheses


def repository_url(root: Path = ROOT) -> str:
    """The course's repository URL, "https://github.com/OWNER/NAME", from root/pyproject.toml."""
    path = Path(root) / "pyproject.toml"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run this in a clone of the repository (or pass --root DIR)")
    found = PYPROJECT_URL.search(path.read_text())
    if found is None:
        raise ValueError(f'{path} has no line `Repository = "https://github.com/OWNER/NAME"` under [project.urls]')
    return found.group(1)


def badge_url(repo: str, path: str) -> str:
    """The "Open in Colab" link of the notebook at `path` ("notebooks/01_x.ipynb") in the repository `repo`."""
    return f"https://colab.research.google.com/github/{_owner_name(repo)}/blob/{BRANCH}/{path}"


def notebook_urls(path: Path) -> tuple[list[str], list[str]]:
    """(the badge links of the first markdown cell, the REPO values of the first code cell) of a notebook."""
    cells = json.loads(Path(path).read_text())["cells"]
    markdown = "".join(next(c for c in cells if c["cell_type"] == "markdown")["source"])
    code = "".join(next(c for c in cells if c["cell_type"] == "code")["source"])
    return [link[1:-1] for link in BADGE.findall(markdown)], SETUP_REPO.findall(code)


def set_url(url: str, root: Path = ROOT) -> list[Path]:
    """Point pyproject.toml, README.md and every badge and setup cell (notebooks/, student/) at `url`.

    Replaces the old repository's "OWNER/NAME" wherever it follows github.com/ or Colab's /github/, in place (the
    rest of each file keeps its bytes). Returns the files that changed.
    """
    root = Path(root)
    new = _owner_name(url.removesuffix("/").removesuffix(".git"))
    old = _owner_name(repository_url(root))
    links = re.compile(rf"(github\.com/|colab\.research\.google\.com/github/){re.escape(old)}(?![\w.-])")
    files = [root / "pyproject.toml", root / "README.md", *sorted((root / "notebooks").glob("*.ipynb")),
             *sorted((root / "student").glob("*.ipynb"))]
    changed = []
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text()
        rewritten = links.sub(lambda m: m.group(1) + new, text)
        if path.name == "pyproject.toml":  # a real URL now: the note that it is a placeholder goes
            rewritten = PLACEHOLDER_NOTE.sub(r"\1", rewritten)
        if rewritten != text:
            path.write_text(rewritten)
            changed.append(path)
    return changed


def _owner_name(url: str) -> str:
    """ "OWNER/NAME" of a GitHub URL; a clear error for anything else (Colab's badges open GitHub only)."""
    found = GITHUB.fullmatch(url)
    if found is None:
        raise ValueError(f"{url!r} is not a GitHub repository URL: give https://github.com/OWNER/NAME "
                         "(Colab's badges open notebooks from GitHub only)")
    return found.group(1)


def main(argv: list[str] | None = None) -> int:
    """`python -m miniclip.course.setup set-url URL [--root DIR]`; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m miniclip.course.setup", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("set-url", help="point pyproject.toml, the badges and the setup cells at a repository")
    p.add_argument("url", help="https://github.com/OWNER/NAME")
    p.add_argument("--root", type=Path, default=ROOT, help="the repository's root (default: this clone)")
    args = parser.parse_args(argv)
    try:
        old = repository_url(args.root)
        changed = set_url(args.url, args.root)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{old} -> {args.url}: changed {len(changed)} files")
    for path in changed:
        print(" ", path.relative_to(args.root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
