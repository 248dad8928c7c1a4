"""The rule for tests that need something from outside the repository (conftest.need)."""

from __future__ import annotations

import sys

import pytest
from conftest import in_ci, need, need_module, pytest_runtest_setup


@pytest.mark.parametrize("value", ["", "0", "false"])
def test_a_user_machine_skips_with_the_reason(monkeypatch, value):
    monkeypatch.setenv("CI", value)
    assert not in_ci()
    need(True, "never said")
    with pytest.raises(pytest.skip.Exception, match="no shared weights"):
        need(False, "no shared weights")
    with pytest.raises(pytest.skip.Exception, match="the extra: No module named"):
        need_module("imgkit_no_such_extra", "the extra")


@pytest.mark.parametrize("value", ["true", "TRUE", "1"])
def test_ci_fails_instead(monkeypatch, value):
    monkeypatch.setenv("CI", value)
    assert in_ci()
    need(True, "never said")
    with pytest.raises(pytest.fail.Exception, match="no shared weights .CI=true"):
        need(False, "no shared weights")
    with pytest.raises(pytest.fail.Exception, match="the extra: No module named"):
        need_module("imgkit_no_such_extra", "the extra")
    assert need_module("json", "stdlib") is sys.modules["json"]


def test_an_installed_extra_that_cannot_import_is_an_error(monkeypatch, tmp_path):
    # Installed, but broken: not a skip anywhere.
    (tmp_path / "imgkit_broken_extra.py").write_text("import imgkit_missing_dependency\n")
    monkeypatch.syspath_prepend(tmp_path)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(ModuleNotFoundError, match="imgkit_missing_dependency"):
        need_module("imgkit_broken_extra", "the extra")


class _Item:
    """What pytest_runtest_setup reads of a test item: its marks."""

    def __init__(self, *marks):
        self.marks = [m.mark for m in marks]

    def get_closest_marker(self, name):
        return next(self.iter_markers(name), None)

    def iter_markers(self, name):
        return (m for m in self.marks if m.name == name)


def test_the_marker_applies_the_same_rule(monkeypatch):
    item = _Item(pytest.mark.needs(False, reason="a marked need that is not met"))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="a marked need"):
        pytest_runtest_setup(item)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="a marked need"):
        pytest_runtest_setup(item)
    pytest_runtest_setup(_Item(pytest.mark.needs(True, reason="met")))
