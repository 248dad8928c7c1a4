"""tools/mutate.py: the mutants it makes. (The check itself is ``make mutation``.)"""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parent.parent / "tools" / "mutate.py"
_spec = importlib.util.spec_from_file_location("imgkit_mutate", TOOL)
mutate = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = mutate  # its dataclasses look their module up
_spec.loader.exec_module(mutate)

SOURCE = '''
"""A module."""
LIMIT = 0.5


def f(a, b):
    """A function."""
    if not a < b:
        raise ValueError(f"{a + 1} is too big")
    a = a * 2
    return min(a, b), zip([a], [b], strict=True)
'''


def test_the_mutants_of_a_small_module():
    mutants = mutate.list_mutants(SOURCE)
    assert [(m.line, m.what) for m in mutants] == [
        (3, "`0.5` -> `1.5`"),
        (8, "`not` removed"),
        (8, "`<` -> `<=`"),
        (9, "statement dropped"),  # the raise; its f-string message is left alone
        (10, "statement dropped"),  # a rebinding: `a` keeps the argument's value
        (10, "`*` -> `/`"),
        (10, "`2` -> `3`"),
        (11, "returned values swapped"),
        (11, "`min` -> `max`"),  # and zip's strict=True is left alone
    ]
    original = ast.unparse(ast.parse(SOURCE))
    sources = [mutate.mutated_source(SOURCE, m) for m in mutants]
    assert len(set(sources)) == len(sources) and original not in sources
    assert "if a < b:" in sources[1] and "return (zip(" in sources[7]
    for source in sources:
        compile(source, "mutant", "exec")


def test_only_the_named_functions_are_mutated():
    mutants = mutate.list_mutants(SOURCE + "\n\ndef g(x):\n    return x + 1\n", ("g",))
    assert [m.what for m in mutants] == ["`+` -> `-`", "`1` -> `0`"]
