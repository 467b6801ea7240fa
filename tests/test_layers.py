"""The package's shape, as the README states it: three layers that import downward only, no cycle, small files.

library (miniclip/*, miniclip/data/*)  <-  probes (miniclip/probes/*)  <-  course (miniclip/course/*)

miniclip/__main__.py is the program's entry point, above all three. Read from the source with `ast`, so the test
needs nothing imported and names the file and line of every violation.
"""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "miniclip"
LAYERS = {"library": 0, "probes": 1, "course": 2, "entry": 3}
# Imported inside a function on purpose: slow to import, and needed by one path only.
HEAVY_OPTIONAL = {"datasets", "torchvision", "transformers", "ipywidgets", "IPython", "open_clip",
                  "miniclip.hf"}  # miniclip.hf imports transformers
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str:
    if module == "miniclip.__main__":
        return "entry"
    if module.startswith("miniclip.probes"):
        return "probes"
    if module.startswith("miniclip.course"):
        return "course"
    return "library"


def sources() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path):
    """(imported module, line, at top level?) for every import of the file; `from a import b` gives a.b if a.b is a module."""
    tree = ast.parse(path.read_text(), str(path))
    top_level = {id(node) for node in tree.body}
    known = sources()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno, id(node) in top_level
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                yield (full if full in known else node.module), node.lineno, id(node) in top_level


def miniclip_graph() -> dict[str, set[str]]:
    known = sources()
    return {m: {name for name, _, _ in imports(p) if name in known and name != m} for m, p in known.items()}


def test_imports_point_down_the_layers():
    upward = [f"{p.relative_to(PACKAGE.parent)}:{line} ({layer(m)}) imports {name} ({layer(name)})"
              for m, p in sources().items() for name, line, _ in imports(p)
              if name.startswith("miniclip") and LAYERS[layer(name)] > LAYERS[layer(m)]]
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_no_import_cycle():
    graph = miniclip_graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m, path):
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(n):] + [n]))
            if n not in state:
                visit(n, path + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def test_function_level_imports_only_for_heavy_optional_dependencies():
    inside = [f"{p.relative_to(PACKAGE.parent)}:{line} imports {name} inside a function"
              for m, p in sources().items() for name, line, top in imports(p)
              if not top and name.split(".")[0] not in HEAVY_OPTIONAL and name not in HEAVY_OPTIONAL
              and not name.startswith("torch.distributed.nn")]  # loss.py: only under torch.distributed
    assert not inside, "\n".join(inside)


def test_the_layer_check_sees_a_violation(tmp_path):
    # The checks above are only worth something if they can fail: an upward import and a cycle are caught.
    assert layer("miniclip.train") == "library" and layer("miniclip.course.widgets") == "course"
    assert LAYERS[layer("miniclip.course.figures")] > LAYERS[layer("miniclip.train")]
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    import miniclip.course.figures\n")
    assert list(imports(bad)) == [("miniclip.course.figures", 2, False)]


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_no_module_over_400_lines(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.name} has {lines} lines; split it by concept"


def test_nothing_refers_to_files_outside_the_repository():
    root = PACKAGE.parent
    files = [*PACKAGE.rglob("*.py"), *(root / "notebooks").glob("*.ipynb"), *(root / "tests").glob("*.py"),
             *(root / "bench").glob("*.py"), root / "README.md"]
    marker = "REFERENCES" + ".md"  # split, so that this file does not find itself
    assert not [str(f.relative_to(root)) for f in files if marker in f.read_text()]


def public_without_docstring(path: Path) -> list[str]:
    """'name:line' of every public function, method and class of a file that has no docstring (a name without a
    leading underscore, in a class whose own name has none, or at the top level)."""
    missing = []

    def walk(nodes, prefix: str = "") -> None:
        for node in nodes:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                if ast.get_docstring(node) is None:
                    missing.append(f"{prefix}{node.name}:{node.lineno}")
                if isinstance(node, ast.ClassDef):
                    walk(node.body, f"{prefix}{node.name}.")

    walk(ast.parse(path.read_text(), str(path)).body)
    return missing


def test_every_public_function_has_a_docstring(tmp_path):
    lacking = {str(p.relative_to(PACKAGE.parent)): m for p in PACKAGE.rglob("*.py") if (m := public_without_docstring(p))}
    assert not lacking, f"give these a short docstring (shapes and units): {lacking}"
    bare = tmp_path / "bare.py"
    bare.write_text('class A:\n    """A."""\n\n    def f(self):\n        return 1\n\n    def _g(self):\n        return 2\n')
    assert public_without_docstring(bare) == ["A.f:4"]  # the check sees a bare method, not a private one
