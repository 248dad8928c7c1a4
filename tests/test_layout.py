"""The library's shape: stages import only downward, no import cycles, small files.

Every import in ``imgkit`` counts, the ones inside functions too: a lazy import is
still a dependency, and a cycle through one is still a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "imgkit"

# The pipeline, bottom to top. A module may import its own stage and the ones below.
# export sits on infer (it reads images as the bundle wants them and compares
# probabilities as predict computes them, and predict's ONNX runtime is the one it
# checks) and below evaluate, which never needs it.
STAGES = {
    "data": 1,
    "models": 2,
    "train": 3,
    "infer": 4,
    "export": 5,
    "evaluate": 6,
    "commands": 7,
}
MAX_LINES = 450
MAX_FUNCTION_LINES = 80  # of code: the docstring does not count


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path, known: set[str]) -> set[str]:
    """The imgkit modules ``path`` imports (``from pkg import mod`` counts as pkg.mod)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        else:
            continue
        for name in names:
            # The longest known module the name starts with.
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name.startswith("imgkit") and name != "imgkit":
                found.add(name)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {m: _imports(p, known) - {m} for m, p in modules.items()}


def _stage(module: str) -> int:
    parts = module.split(".")
    return STAGES.get(parts[1], 0) if len(parts) > 1 else 0


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}  # 1 on the current path, 2 finished
    cycles = []

    def visit(node, path):
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            # A package's __init__ re-exporting its submodules is not a cycle the
            # submodule can feel: skip edges from a package into itself.
            if dep.startswith(node + "."):
                continue
            if state.get(dep) == 1:
                cycles.append(path[path.index(dep) :] + [dep])
            elif dep not in state:
                visit(dep, [*path, dep])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_stages_import_only_downward():
    wrong = [
        f"{m} imports {d}"
        for m, deps in _graph().items()
        for d in deps
        if _stage(d) > _stage(m) and not m.startswith("imgkit.__main__")
    ]
    assert not wrong, "a lower stage imports a higher one: " + "; ".join(sorted(wrong))


def test_shared_modules_import_no_stage():
    """errors, fileio, backend, bundle sit under every stage."""
    wrong = [
        f"{m} imports {d}"
        for m, deps in _graph().items()
        if _stage(m) == 0 and not m.endswith("__main__")
        for d in deps
        if _stage(d) > 0
    ]
    assert not wrong, "; ".join(sorted(wrong))


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.name)
def test_no_module_is_too_long(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path}: {lines} lines (at most {MAX_LINES})"


def _function_lengths(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            first = body[0]
            has_doc = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            start = body[1].lineno if has_doc and len(body) > 1 else first.lineno
            yield node.name, node.end_lineno - start + 1


def test_no_function_is_too_long():
    long = [
        f"{path.relative_to(PACKAGE.parent)}:{name} ({n} lines)"
        for path in sorted(PACKAGE.rglob("*.py"))
        for name, n in _function_lengths(path)
        if n > MAX_FUNCTION_LINES
    ]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: " + ", ".join(long)


def test_the_checker_sees_a_cycle(tmp_path, monkeypatch):
    """The cycle walk is real: two modules importing each other are caught."""
    pkg = tmp_path / "imgkit"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "data" / "__init__.py").write_text("")
    (pkg / "data" / "a.py").write_text("def f():\n    from imgkit.data import b\n")
    (pkg / "data" / "b.py").write_text("from imgkit.data.a import f\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", pkg)
    with pytest.raises(AssertionError, match="imgkit.data.a -> imgkit.data.b"):
        test_no_import_cycles()


MAX_PARAMETERS = 8  # of a library function in infer/: shared option sets arrive as one value


def _parameter_counts(path: Path):
    """(name, parameters) of every function in ``path``; ``self`` and ``cls`` do not count."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            a = node.args
            names = [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
            names += [p.arg for p in (a.vararg, a.kwarg) if p is not None]
            names = [n for n in names if n not in ("self", "cls")]
            yield getattr(node, "name", "<lambda>"), len(names)


def test_no_infer_function_takes_more_than_eight_parameters():
    many = [
        f"{path.relative_to(PACKAGE.parent)}:{name} ({n})"
        for path in sorted((PACKAGE / "infer").rglob("*.py"))
        for name, n in _parameter_counts(path)
        if n > MAX_PARAMETERS
    ]
    assert not many, f"infer functions over {MAX_PARAMETERS} parameters: " + ", ".join(many)


def test_the_parameter_count_sees_every_kind(tmp_path):
    source = "class A:\n    def f(self, a, /, b, *c, d, **e): pass\n"
    (tmp_path / "m.py").write_text(source)
    assert list(_parameter_counts(tmp_path / "m.py")) == [("f", 5)]
