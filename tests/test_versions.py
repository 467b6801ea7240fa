"""An installed dependency outside pyproject.toml's range gets one clear message with the pip command."""
from importlib import metadata

import pytest

from miniclip import versions


def test_this_environment_fits_the_ranges():
    assert versions.dependency_problems() == []


def test_an_old_torch_is_named_with_the_command_that_fixes_it(monkeypatch):
    real = metadata.version
    monkeypatch.setattr(versions.metadata, "version", lambda name: "2.0.1" if name == "torch" else real(name))
    problems = versions.dependency_problems()
    assert len(problems) == 1 and problems[0].startswith("torch 2.0.1 is installed") and 'pip install "torch' in problems[0]
    with pytest.raises(ImportError, match="torch 2.0.1"):
        versions.check_dependencies()


def test_a_missing_dependency_is_named(monkeypatch):
    real = metadata.version

    def version(name):
        if name == "safetensors":
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(versions.metadata, "version", version)
    wanted = next(r for r in metadata.requires("miniclip") if r.startswith("safetensors"))  # e.g. "safetensors>=0.4.1"
    assert wanted != "safetensors"  # a range to name
    assert versions.dependency_problems() == [f'safetensors is missing: pip install "{wanted}"']
