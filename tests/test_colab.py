"""Colab: one repository URL (pyproject.toml) that every badge and setup cell repeats, `set-url` for a fork, a
setup cell that installs only when miniclip is missing and says what to do when pip fails, and dependency ranges
that keep what Colab preinstalls."""
import json
import os
import re
import shutil
import subprocess
import sys
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, from PyPI (miniclip's dev extra)
    import tomli as tomllib
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

from miniclip.course import setup

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb")) + sorted((ROOT / "student").glob("[0-9]*.ipynb"))
# What we assume Colab preinstalls (2024-2025 runtimes); installing miniclip must keep every one of them.
COLAB = {"torch": ["2.5.1", "2.6.0", "2.8.0", "2.9.0"], "torchvision": ["0.20.1", "0.21.0", "0.23.0", "0.24.0"],
         "transformers": ["4.46.2", "4.51.3", "4.57.1"], "ipywidgets": ["7.7.1"], "numpy": ["1.26.4", "2.0.2"],
         "pillow": ["11.0.0", "11.3.0"], "tokenizers": ["0.20.3", "0.22.1"], "safetensors": ["0.4.5", "0.6.2"],
         "matplotlib": ["3.8.0", "3.10.0"], "tqdm": ["4.66.6", "4.67.1"]}


def setup_cell(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    return "".join(next(c for c in cells if c["cell_type"] == "code")["source"])


def install_part(path: Path) -> str:
    """The setup cell up to the lesson's import: what runs before miniclip may be importable."""
    return setup_cell(path).split("from miniclip.course.lesson import")[0]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name[:2]}")
def test_badge_and_setup_cell_name_pyprojects_repository(path):
    repo = setup.repository_url(ROOT)
    own_path = f"{path.parent.name}/{path.name}"  # student/ badges open student/
    badges, repos = setup.notebook_urls(path)
    assert badges == [setup.badge_url(repo, own_path)], f"{own_path}: badge {badges} is not {repo}'s {own_path}"
    assert repos == [repo], f"{own_path}: the setup cell's REPO {repos} is not pyproject.toml's {repo}"
    cell = setup_cell(path)
    assert 'os.environ.get("MINICLIP_REPO", REPO)' in cell and "USE_DRIVE = False" in cell
    assert '[sys.executable, "-m", "pip", "install", source]' in cell  # no -q hiding errors, no --upgrade


def test_pyproject_names_the_repository_once():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["urls"]["Repository"] == setup.repository_url(ROOT)
    assert setup.GITHUB.fullmatch(project["urls"]["Repository"])


@pytest.mark.parametrize("name", sorted(COLAB))
def test_dependency_ranges_admit_colabs_versions(name):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = {re.split(r"[<>=!~ \[]", d, maxsplit=1)[0]: d for d in project["dependencies"]}
    spec = SpecifierSet(deps[name][len(name):])
    refused = [v for v in COLAB[name] if v not in spec]
    assert not refused, f"pyproject.toml's {deps[name]} would make pip replace Colab's {name} {refused}"


def test_set_url_points_everything_at_a_fork(tmp_path):
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for folder in ("notebooks", "student"):  # student/: the notebooks as `make student` points their badges
        (tmp_path / folder).mkdir()
        for path in NOTEBOOKS[:3]:
            text = path.read_text().replace("/blob/main/notebooks/", f"/blob/main/{folder}/")
            (tmp_path / folder / path.name).write_text(text)
    old = setup.repository_url(tmp_path)
    fork = "https://github.com/a-teacher/miniclip-fork"
    before = {p: p.read_text() for p in tmp_path.rglob("*.ipynb")}
    changed = setup.set_url(fork + ".git", tmp_path)
    assert setup.repository_url(tmp_path) == fork
    assert "placeholder" not in (tmp_path / "pyproject.toml").read_text()  # set: no longer a placeholder
    assert {p for p in changed if p.suffix == ".ipynb"} == set(before)  # every notebook, nothing else of theirs
    for path in before:
        badges, repos = setup.notebook_urls(path)
        assert badges == [setup.badge_url(fork, f"{path.parent.name}/{path.name}")] and repos == [fork]
        assert setup.GITHUB.fullmatch(old).group(1) not in path.read_text()
        # in place: only the two lines with the URL changed
        diff = [a for a, b in zip(before[path].splitlines(), path.read_text().splitlines()) if a != b]
        assert len(diff) == 2 and len(before[path].splitlines()) == len(path.read_text().splitlines())
    assert setup.main(["set-url", old, "--root", str(tmp_path)]) == 0  # and back
    assert {p: p.read_text() for p in before} == before


def test_set_url_refuses_what_colab_cannot_open(tmp_path, capsys):
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    assert setup.main(["set-url", "https://gitlab.com/me/miniclip", "--root", str(tmp_path)]) == 1
    assert "not a GitHub repository URL" in capsys.readouterr().err
    assert setup.main(["set-url", "https://github.com/me/miniclip", "--root", str(tmp_path / "nowhere")]) == 1
    assert "pyproject.toml not found" in capsys.readouterr().err


def test_setup_cell_does_nothing_when_miniclip_is_installed(capsys):
    namespace = {}
    exec(compile(install_part(NOTEBOOKS[0]), "setup cell", "exec"), namespace)
    assert capsys.readouterr().out == "" and "pip" not in namespace


def test_setup_cell_explains_a_failed_install(tmp_path):
    # `python -S` hides site-packages, so miniclip is missing; pip (run without -S) then fails on a repository
    # that is not there, offline. The cell must show the command, pip's own error, and what to do.
    missing = tmp_path / "no-such-repo"
    env = {**os.environ, "MINICLIP_REPO": missing.as_uri(), "PIP_NO_INDEX": "1", "GIT_TERMINAL_PROMPT": "0"}
    run = subprocess.run([sys.executable, "-S", "-c", install_part(NOTEBOOKS[0])], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode != 0
    assert f"pip install git+{missing.as_uri()}" in run.stdout
    assert "no-such-repo" in run.stdout.split("pip install", 1)[1]  # pip's own error, printed
    assert "RuntimeError: pip could not install miniclip" in run.stderr
    assert "MINICLIP_REPO" in run.stderr and "make wheel" in run.stderr
