"""The set-up files agree: requirements.txt pins, environment.yml repeats the pins, pyproject.toml keeps ranges."""
import re
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, from PyPI (miniclip's dev extra)
    import tomli as tomllib
from pathlib import Path

from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent


def pins(lines):
    return dict(re.match(r"^\s*-?\s*([A-Za-z0-9_.-]+)==([^\s#]+)", l).groups() for l in lines
                if re.match(r"^\s*-?\s*[A-Za-z0-9_.-]+==", l))


def test_environment_yml_repeats_the_requirements_pins():
    req = pins((ROOT / "requirements.txt").read_text().splitlines())
    env_text = (ROOT / "environment.yml").read_text()
    env = pins(env_text.splitlines())
    assert req == {"torch": "2.14.1", "torchvision": "0.29.1"}
    assert env == req
    assert "python=3.11" in env_text and "-e .[dev]" in env_text


def test_pyproject_keeps_ranges_that_admit_the_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = {re.split(r"[<>=!~ ]", d, 1)[0]: d for d in project["dependencies"]}
    for name, version in pins((ROOT / "requirements.txt").read_text().splitlines()).items():
        spec = deps[name]
        assert "==" not in spec, f"pyproject.toml pins {name}; keep a range so Colab keeps its own build"
        lower = re.search(r">=([\d.]+)", spec).group(1)
        as_tuple = lambda v: tuple(int(x) for x in v.split("."))  # noqa: E731
        assert as_tuple(lower) <= as_tuple(version), f"{name} {version} is below pyproject's {spec}"
    assert project["scripts"]["miniclip"] == "miniclip.__main__:main"


def test_makefile_installs_the_pins_and_tests_offline():
    make = (ROOT / "Makefile").read_text()
    assert "-r requirements.txt" in make and "HF_HUB_OFFLINE=1" in make and "MINICLIP_SMOKE=1" in make
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_each_lower_bound_is_the_version_the_oldest_versions_run_pins():
    """pyproject.toml's lower bounds are what bench/oldest_versions.sh tested: raising one means testing it there."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lower = {re.split(r"[<>=!~ ]", d, 1)[0]: re.search(r">=([\d.]+)", d).group(1) for d in project["dependencies"]}
    oldest = pins((ROOT / "bench" / "oldest_versions.txt").read_text().splitlines())
    assert {name: Version(oldest.get(name, "0")) for name in lower} == {n: Version(v) for n, v in lower.items()}
