"""Mutation check: does the suite fail when the arithmetic users trust is wrong?

For each module in :data:`TARGETS`, every mutant (one small change to its source:
an operator swapped, a constant moved, a ``not`` removed, a statement dropped) is
written into a private copy of the repository, and the tests that exercise the module
run against it. A mutant is *killed* when a test fails (or the run times out), and
*survives* when they all pass: then either a test is missing, or the mutant is
equivalent (it cannot change any result), which docs/mutation.md explains.

    python3 tools/mutate.py                 # every module (make mutation)
    python3 tools/mutate.py submit metrics  # some (make mutation ONLY="submit")
    python3 tools/mutate.py --list submit   # the mutants, without running anything

Operators, chosen for arithmetic and decisions rather than message text: ``+ - * /
// ** & |`` swapped (``+``<->``-``, ``*``<->``/``, ``//``->``/``, ``**``->``*``,
``&``<->``|``, augmented assignments too); ``< <= > >= == != in is`` moved to their
neighbour; ``and``<->``or``; ``not`` and unary minus removed; numbers tweaked (0<->1,
others +1) and booleans flipped; ``min``<->``max`` and ``argmin``<->``argmax``; the
branches of ``a if c else b`` and the first two values of a returned tuple swapped;
statements dropped (a ``raise``, a call, an augmented assignment, an assignment to an
item or attribute, or one that rebinds a name). Nothing inside f-strings, docstrings,
annotations or ``strict=`` is mutated: those change messages, not results.

Speed: the parent imports pytest and the heavy libraries once and forks a child per
mutant, which imports imgkit from the copy and runs ``pytest -x`` on the module's
tests only (a fresh ``python -m pytest`` costs 2-5 s of start-up per mutant). Tests
that start a subprocess see the copy too (``PYTHONPATH``). POSIX only (fork).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import importlib.util
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Target:
    """A module to mutate and the tests that should catch its mutants.

    Attributes:
        path: the module, relative to the repository root.
        tests: pytest node ids or files, relative to the root: the few that exercise
            the module (the whole suite would take minutes per mutant).
        functions: mutate only these top-level functions and classes (and nothing at
            module level); empty for the whole module.
    """

    path: str
    tests: tuple[str, ...]
    functions: tuple[str, ...] = ()


HISTO = "tests/test_histopathology.py"
TARGETS = {
    "submit": Target("imgkit/evaluate/submit.py", ("tests/test_submit.py",)),
    "metrics": Target("imgkit/evaluate/metrics.py", ("tests/test_eval.py",)),
    "grouping": Target(
        "imgkit/data/grouping.py",
        (
            f"{HISTO}::test_regroup_takes_the_first_group_or_the_whole_match",
            f"{HISTO}::test_split_balance_by_hand",
            f"{HISTO}::test_idc_layout_labels_groups_and_strays",
            f"{HISTO}::test_a_patch_level_random_split_leaks_patients_but_prep_does_not",
            f"{HISTO}::test_group_by_regex_keeps_groups_together_and_counts_strays",
        ),
    ),
    "calibration": Target(
        "imgkit/train/calibration.py",
        (
            "tests/test_transfer.py::test_temper_and_log_loss_by_hand",
            "tests/test_transfer.py::test_temperature_recovers_a_known_temperature",
            "tests/test_transfer.py::test_temperature_is_one_when_calibrated_and_works_for_sigmoid",
            "tests/test_transfer.py::test_fit_temperature_finds_the_minimum_and_stops_at_its_bounds",
            f"{HISTO}::test_raw_threshold_gives_the_same_labels_without_the_temperature",
            "tests/test_predict.py::test_temperature",
        ),
    ),
    "thresholds": Target(
        "imgkit/train/thresholds.py",
        (
            f"{HISTO}::test_thresholds_choose_and_change_labels",
            f"{HISTO}::test_raw_threshold_gives_the_same_labels_without_the_temperature",
            f"{HISTO}::test_parse_threshold_every_form_and_the_open_interval",
            f"{HISTO}::test_threshold_scores_at_the_edges_by_hand",
            f"{HISTO}::test_choose_threshold_candidates_and_ties_by_hand",
            f"{HISTO}::test_raw_threshold_stays_finite_at_0_and_1",
        ),
    ),
    "predict": Target(
        "imgkit/infer/predict.py",
        (
            "tests/test_predict.py::test_probabilities_and_rows",
            "tests/test_predict.py::test_wrong_number_of_outputs_is_a_bundle_error",
            "tests/test_predict.py::test_temperature",
            "tests/test_predict.py::test_outputs_temperature_and_threshold_edges",
            f"{HISTO}::test_thresholds_choose_and_change_labels",
            "tests/test_predict.py::test_predict_folder_csv_is_pinned",
            "tests/test_predict.py::test_sigmoid_bundle_gives_both_columns",
        ),
        ("csv_columns", "to_probabilities", "apply_temperature", "prediction_frame"),
    ),
    "inputs": Target(
        "imgkit/infer/inputs.py",
        (
            "tests/test_shards.py::test_shard_arithmetic_and_bad_values",
            "tests/test_shards.py::test_shard_bounds_by_hand",
            "tests/test_plan.py",
        ),
        ("parse_shard", "shard_bounds", "Tally"),
    ),
    "maskread": Target(
        "imgkit/evaluate/maskread.py",
        ("tests/test_eval_mask_folders.py", "tests/test_mask_ignore.py"),
    ),
}

# --- mutants ---------------------------------------------------------------------------

BINOP = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Div,
    ast.Pow: ast.Mult,
    ast.BitAnd: ast.BitOr,
    ast.BitOr: ast.BitAnd,
}
CMPOP = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}
SYMBOL = {
    ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//",
    ast.Pow: "**", ast.BitAnd: "&", ast.BitOr: "|", ast.Lt: "<", ast.LtE: "<=",
    ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=", ast.In: "in",
    ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not", ast.And: "and", ast.Or: "or",
}  # fmt: skip
# Imported once by the parent, before it forks a child per mutant.
PRELOAD = (
    "numpy", "pandas", "click", "PIL.Image", "pytest",
    "_hypothesis_pytestplugin", "xdist.plugin", "pytest_benchmark.plugin",
)  # fmt: skip
SWAP_NAMES = {"min": "max", "max": "min", "argmin": "argmax", "argmax": "argmin"}


@dataclass
class Mutant:
    """One change: where (line), what (a short description), and how to make it."""

    line: int
    col: int
    what: str
    index: int = 0  # its place among the module's mutation sites, in walk order
    sub: int = 0  # which of the site's changes (a comparison chain has several)


def _is_docstring(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )


def _bound_names(fn: ast.AST) -> dict[str, int]:
    """Each name a function binds (its arguments, assignments), with the first line."""
    first: dict[str, int] = {}
    if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
        a = fn.args
        for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]:
            if arg is not None:
                first[arg.arg] = 0
    for node in ast.walk(fn):
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.For | ast.AugAssign | ast.AnnAssign | ast.NamedExpr):
            targets = [node.target]
        for t in targets:
            for n in ast.walk(t):
                if isinstance(n, ast.Name):
                    first[n.id] = min(first.get(n.id, node.lineno), node.lineno)
    return first


class _Sites(ast.NodeVisitor):
    """Walks a module in a fixed order, numbering every place a mutant can go.

    With ``apply=(index, sub)`` it makes that one change in place instead.
    """

    def __init__(self, functions: tuple[str, ...] = (), apply: tuple[int, int] | None = None):
        self.functions = functions
        self.apply = apply
        self.mutants: list[Mutant] = []
        self.count = 0
        self.bound: dict[str, int] | None = None  # names the current function binds
        self.applied = False

    # Each site: a list of (description, change) where change() mutates the node.
    def _site(self, node: ast.AST, changes: list[tuple[str, object]]) -> None:
        index = self.count
        self.count += 1
        for sub, (what, change) in enumerate(changes):
            if self.apply is None:
                self.mutants.append(Mutant(node.lineno, node.col_offset + 1, what, index, sub))
            elif self.apply == (index, sub):
                change()
                self.applied = True

    # --- what is not walked ---

    def visit_Module(self, node: ast.Module) -> None:
        for stmt in node.body:
            if _is_docstring(stmt) or isinstance(stmt, ast.Import | ast.ImportFrom):
                continue
            named = isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            if self.functions and not (named and stmt.name in self.functions):
                continue
            if named:
                self.visit(stmt)
            else:
                # Module level: constants only (dropping a definition is only a NameError).
                self._expressions(stmt)

    def _expressions(self, stmt: ast.stmt) -> None:
        for child in ast.iter_child_nodes(stmt):
            if isinstance(child, ast.expr) and child is not getattr(stmt, "annotation", None):
                self.visit(child)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        outer = self.bound
        self.bound = _bound_names(node)
        for default in [*node.args.defaults, *node.args.kw_defaults]:
            if default is not None:
                self.visit(default)
        self._body(node.body)
        self.bound = outer

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for stmt in node.body:
            if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
                self.visit(stmt)
            elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
                self.visit(stmt.value)  # a dataclass field's default

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        return  # f-strings: messages

    def visit_keyword(self, node: ast.keyword) -> None:
        if node.arg != "strict":  # zip(strict=) only checks lengths the code already matches
            self.visit(node.value)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)

    # --- statements ---

    def _body(self, body: list[ast.stmt]) -> None:
        for i, stmt in enumerate(body):
            if _is_docstring(stmt) and i == 0:
                continue
            if self._droppable(stmt):

                def drop(body=body, i=i, stmt=stmt):
                    body[i] = ast.copy_location(ast.Pass(), stmt)

                self._site(stmt, [("statement dropped", drop)])
            self.visit(stmt)

    def _droppable(self, stmt: ast.stmt) -> bool:
        if isinstance(stmt, ast.Raise | ast.AugAssign | ast.Continue | ast.Break):
            return True
        if isinstance(stmt, ast.Expr):
            return isinstance(stmt.value, ast.Call)
        if isinstance(stmt, ast.Assign):
            for t in stmt.targets:
                if isinstance(t, ast.Subscript | ast.Attribute):
                    return True
                names = [n.id for n in ast.walk(t) if isinstance(n, ast.Name)]
                if self.bound and any(self.bound.get(n, 10**9) < stmt.lineno for n in names):
                    return True  # a rebinding: dropping it leaves the earlier value
        return False

    def generic_visit(self, node: ast.AST) -> None:
        # Statement lists get _body (which offers each statement to be dropped).
        for name, value in ast.iter_fields(node):
            if isinstance(value, list) and value and isinstance(value[0], ast.stmt):
                self._body(value)
            elif isinstance(value, list):
                for item in value:
                    if isinstance(item, ast.AST):
                        self.visit(item)
            elif isinstance(value, ast.AST):
                if name in ("annotation", "returns"):
                    continue
                self.visit(value)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        op = type(node.op)
        if op in BINOP:
            new = BINOP[op]

            def change(node=node, new=new):
                node.op = new()

            self._site(node, [(f"`{SYMBOL[op]}=` -> `{SYMBOL[new]}=`", change)])
        self.generic_visit(node)

    def visit_Return(self, node: ast.Return) -> None:
        elts = node.value.elts if isinstance(node.value, ast.Tuple) else []
        if len(elts) >= 2 and ast.dump(elts[0]) != ast.dump(elts[1]):  # not `return None, None`

            def change(node=node):
                e = node.value.elts
                e[0], e[1] = e[1], e[0]

            self._site(node, [("returned values swapped", change)])
        self.generic_visit(node)

    # --- expressions ---

    def visit_BinOp(self, node: ast.BinOp) -> None:
        op = type(node.op)
        if op in BINOP:
            new = BINOP[op]

            def change(node=node, new=new):
                node.op = new()

            self._site(node, [(f"`{SYMBOL[op]}` -> `{SYMBOL[new]}`", change)])
        self.generic_visit(node)

    def visit_Compare(self, node: ast.Compare) -> None:
        changes = []
        for k, op in enumerate(node.ops):
            new = CMPOP.get(type(op))
            if new is None:
                continue

            def change(node=node, k=k, new=new):
                node.ops[k] = new()

            changes.append((f"`{SYMBOL[type(op)]}` -> `{SYMBOL[new]}`", change))
        if changes:
            self._site(node, changes)
        self.generic_visit(node)

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        op = type(node.op)
        new = ast.Or if op is ast.And else ast.And

        def change(node=node, new=new):
            node.op = new()

        self._site(node, [(f"`{SYMBOL[op]}` -> `{SYMBOL[new]}`", change)])
        self.generic_visit(node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> None:
        if isinstance(node.op, ast.Not | ast.USub):
            label = "`not` removed" if isinstance(node.op, ast.Not) else "unary `-` removed"

            def change(node=node):
                node.op = ast.UAdd() if isinstance(node.op, ast.USub) else _Identity()

            self._site(node, [(label, change)])
        self.generic_visit(node)

    def visit_IfExp(self, node: ast.IfExp) -> None:
        def change(node=node):
            node.body, node.orelse = node.orelse, node.body

        self._site(node, [("`a if c else b` -> `b if c else a`", change)])
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        v = node.value
        if isinstance(v, bool):
            new = not v
        elif isinstance(v, int | float):
            new = type(v)(1) if v == 0 else type(v)(0) if v == 1 else v + 1
        else:
            return

        def change(node=node, new=new):
            node.value = new

        self._site(node, [(f"`{v!r}` -> `{new!r}`", change)])

    def visit_Call(self, node: ast.Call) -> None:
        f = node.func
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
        if name in SWAP_NAMES:
            new = SWAP_NAMES[name]

            def change(f=f, new=new):
                if isinstance(f, ast.Name):
                    f.id = new
                else:
                    f.attr = new

            self._site(node, [(f"`{name}` -> `{new}`", change)])
        self.generic_visit(node)


class _Identity(ast.unaryop):
    """Marks a removed ``not``; :func:`_drop_identity` replaces the node by its operand."""


class _DropIdentity(ast.NodeTransformer):
    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        self.generic_visit(node)
        return node.operand if isinstance(node.op, _Identity) else node


def list_mutants(source: str, functions: tuple[str, ...] = ()) -> list[Mutant]:
    """Every mutant of a module's source, in a fixed order."""
    sites = _Sites(functions)
    sites.visit(ast.parse(source))
    return sites.mutants


def mutated_source(source: str, mutant: Mutant, functions: tuple[str, ...] = ()) -> str:
    """The module's source with one mutant applied."""
    tree = ast.parse(source)
    sites = _Sites(functions, apply=(mutant.index, mutant.sub))
    sites.visit(tree)
    if not sites.applied:
        raise RuntimeError(f"mutant {mutant} not found")
    tree = _DropIdentity().visit(tree)
    return ast.unparse(ast.fix_missing_locations(tree))


# --- running -----------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    target: Target
    mutants: list[Mutant] = field(default_factory=list)
    survived: list[Mutant] = field(default_factory=list)
    timeouts: int = 0
    seconds: float = 0.0
    baseline_s: float = 0.0

    @property
    def killed(self) -> int:
        return len(self.mutants) - len(self.survived)

    @property
    def score(self) -> float:
        return self.killed / len(self.mutants) if self.mutants else 1.0


def _copy_repo(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".hypothesis")
    for name in ("imgkit", "tests"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", dest / "pyproject.toml")


def _run_tests(copy_root: Path, tests: tuple[str, ...], timeout: float, log: Path) -> str:
    """Run ``tests`` in a forked child against the copy: "passed", "failed" or "timeout"."""
    pid = os.fork()
    if pid == 0:  # the child: never returns
        try:
            os.setsid()  # its own process group, so a timeout ends its subprocesses too
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.chdir(copy_root)
            sys.path.insert(0, str(copy_root))
            old = os.environ.get("PYTHONPATH")
            os.environ["PYTHONPATH"] = str(copy_root) + (os.pathsep + old if old else "")
            import pytest

            args = ["-x", "-q", "-n", "0", "-p", "no:cacheprovider", *tests]
            code = pytest.main(args)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(int(code))
        except BaseException:  # noqa: BLE001 - anything in the child is a failed run
            import traceback

            traceback.print_exc()
            os._exit(3)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return "passed" if os.waitstatus_to_exitcode(status) == 0 else "failed"
        if time.monotonic() > deadline:
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "timeout"
        time.sleep(0.02)


def check_module(name: str, target: Target, copy_root: Path, out=sys.stdout) -> Result:
    """Run every mutant of one target against its tests (the copy holds the repository)."""
    result = Result(name, target)
    module = copy_root / target.path
    original = module.read_text()
    pyc = Path(importlib.util.cache_from_source(str(module)))
    log = copy_root / f"{name}.log"

    def install(text: str) -> None:
        module.write_text(text)
        pyc.unlink(missing_ok=True)  # same size and second: a stale .pyc would be used

    # The baseline: the unmutated module as the mutants are written (through ast.unparse).
    install(ast.unparse(ast.parse(original)))
    start = time.monotonic()
    if _run_tests(copy_root, target.tests, 600, log) != "passed":
        install(original)
        raise SystemExit(f"{name}: the tests fail without a mutant; see {log}\n{log.read_text()}")
    result.baseline_s = time.monotonic() - start
    timeout = 3 * result.baseline_s + 10

    result.mutants = list_mutants(original, target.functions)
    print(
        f"{name}: {len(result.mutants)} mutants of {target.path}, "
        f"tests {result.baseline_s:.1f} s unmutated",
        file=out,
        flush=True,
    )
    start = time.monotonic()
    try:
        for m in result.mutants:
            install(mutated_source(original, m, target.functions))
            outcome = _run_tests(copy_root, target.tests, timeout, log)
            if outcome == "passed":
                result.survived.append(m)
                print(f"  survived  {target.path}:{m.line}:{m.col}  {m.what}", file=out, flush=True)
            result.timeouts += outcome == "timeout"
    finally:
        install(original)
    result.seconds = time.monotonic() - start
    return result


def _table(results: list[Result]) -> str:
    lines = [
        "| module | mutants | killed | survived | score | time |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.target.path} | {len(r.mutants)} | {r.killed} | {len(r.survived)} "
            f"| {r.score:.0%} | {r.seconds:.0f} s |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help=f"some of: {', '.join(TARGETS)}")
    parser.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--fail-under", type=float, default=0.9, help="exit 1 when a score is below (0.9)"
    )
    args = parser.parse_args(argv)
    unknown = [m for m in args.modules if m not in TARGETS]
    if unknown:
        parser.error(f"unknown module {', '.join(unknown)} (one of {', '.join(TARGETS)})")
    names = args.modules or list(TARGETS)

    if args.list:
        for name in names:
            t = TARGETS[name]
            mutants = list_mutants((ROOT / t.path).read_text(), t.functions)
            print(f"{name}: {len(mutants)} mutants")
            for m in mutants:
                print(f"  {t.path}:{m.line}:{m.col}  {m.what}")
        return 0

    # Imported once here so each forked child starts with them (not imgkit: the child
    # must import it from the copy, mutated).
    # pytest's plugins too: hypothesis alone takes 1.5 s to import. A plugin this machine
    # lacks is one pytest will not load either.
    for heavy in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(heavy)

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    results = []
    with tempfile.TemporaryDirectory(prefix="imgkit-mutate-") as tmp:
        copy_root = Path(tmp)
        _copy_repo(copy_root)
        for name in names:
            results.append(check_module(name, TARGETS[name], copy_root))
    print()
    print(_table(results))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    r.name: {
                        "path": r.target.path,
                        "mutants": len(r.mutants),
                        "killed": r.killed,
                        "timeouts": r.timeouts,
                        "seconds": round(r.seconds, 1),
                        "survived": [
                            f"{r.target.path}:{m.line}:{m.col} {m.what}" for m in r.survived
                        ],
                    }
                    for r in results
                },
                indent=2,
            )
            + "\n"
        )
    low = [r.name for r in results if r.score < args.fail_under]
    if low:
        print(f"below {args.fail_under:.0%}: {', '.join(low)}", file=sys.stderr)
    return 1 if low else 0


if __name__ == "__main__":
    sys.exit(main())
