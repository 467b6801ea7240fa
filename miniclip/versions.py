"""At import, one clear message when an installed dependency is outside the range miniclip was tested with.

An install with --no-deps, or a runtime changed afterwards (Colab, conda), can hold an older torch or transformers
that would fail later with an error naming neither. The ranges are read from miniclip's own installed metadata.
"""
from __future__ import annotations

from importlib import metadata

from packaging.requirements import Requirement
from packaging.version import InvalidVersion, Version


def dependency_problems(distribution: str = "miniclip") -> list[str]:
    """One line per required package that is missing or outside its range ([] when all fit, or not installed)."""
    try:
        requirements = metadata.requires(distribution) or []
    except metadata.PackageNotFoundError:  # a source tree on sys.path, not installed: nothing to check against
        return []
    problems = []
    for requirement in map(Requirement, requirements):
        if requirement.marker is not None:  # the extras (dev, bench)
            continue
        try:
            installed = metadata.version(requirement.name)
            fits = requirement.specifier.contains(Version(installed), prereleases=True)
        except metadata.PackageNotFoundError:
            problems.append(f'{requirement.name} is missing: pip install "{requirement}"')
            continue
        except InvalidVersion:  # a local build with a version pip cannot read: let it be
            continue
        if not fits:
            problems.append(f'{requirement.name} {installed} is installed; miniclip needs {requirement.name}'
                            f'{requirement.specifier}: pip install "{requirement}"')
    return problems


def check_dependencies() -> None:
    """Raise ImportError listing every dependency problem and the pip command that fixes it."""
    problems = dependency_problems()
    if problems:
        raise ImportError("miniclip cannot start:\n  " + "\n  ".join(problems)
                          + "\n(then restart the Python kernel or runtime)")
