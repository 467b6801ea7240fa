import json
from pathlib import Path

import pytest

from miniclip.course.student import BEGIN, END, build, main, strip_solutions

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def test_strip_keeps_indentation_and_context():
    src = f"def f(x):\n    y = 1\n    {BEGIN}\n    return x * 2\n    {END}\n\nprint(f)\n"
    out = strip_solutions(src)
    assert "x * 2" not in out and "y = 1" in out and "print(f)" in out
    assert "    raise NotImplementedError" in out
    ns = {}
    exec(out, ns)
    with pytest.raises(NotImplementedError):
        ns["f"](3)


@pytest.mark.parametrize("bad", [f"{BEGIN}\nx", f"{END}\n", f"{BEGIN}\n{BEGIN}\n{END}"])
def test_unbalanced_markers_raise(bad):
    with pytest.raises(ValueError):
        strip_solutions(bad)


def _code(nb):
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


def test_student_notebooks_from_the_course(tmp_path):
    notebooks = sorted(NOTEBOOKS.glob("*.ipynb"))
    if not notebooks:
        pytest.skip("no notebooks yet")
    written = build(NOTEBOOKS, tmp_path)
    assert [p.name for p in written] == [p.name for p in notebooks]
    n_exercises = 0
    for src, dst in zip(notebooks, written):
        original, student = json.loads(src.read_text()), json.loads(dst.read_text())
        assert len(original["cells"]) == len(student["cells"])
        for o, s in zip(_code(original), _code(student)):
            if BEGIN in o:
                n_exercises += o.count(BEGIN)
                solution = o.split(BEGIN, 1)[1].split(END, 1)[0].strip()
                assert solution and solution not in s
                assert "NotImplementedError" in s
            else:
                assert o == s
        assert all(not c.get("outputs") for c in student["cells"] if c["cell_type"] == "code")
    assert n_exercises >= len(notebooks)  # every notebook has at least one exercise


def test_cli(tmp_path):
    nb = {"cells": [{"cell_type": "code", "source": [f"{BEGIN}\n", "x = 1\n", f"{END}\n"], "outputs": [1],
                     "execution_count": 3, "metadata": {}}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.ipynb").write_text(json.dumps(nb))
    assert main(["build", str(tmp_path / "src"), "--out", str(tmp_path / "out")]) == 0
    out = json.loads((tmp_path / "out" / "a.ipynb").read_text())
    assert "x = 1" not in "".join(out["cells"][0]["source"]) and out["cells"][0]["outputs"] == []


def test_student_build_of_a_folder_without_notebooks_is_one_line(tmp_path, capsys):
    assert main(["build", str(tmp_path / "nope"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and len(err.splitlines()) == 1 and "Traceback" not in err
