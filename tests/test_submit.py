"""imgkit submit: the Dogs vs Cats default, a sample's order and ids, every bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from imgkit.commands import cli
from imgkit.errors import BadInputError
from imgkit.evaluate.submit import id_key, id_of, make_submission

# As `imgkit predict` writes them for data/test: sorted as text, so 10 before 2.
PREDS = """\
path,label,confidence,p_cat,p_dog
data/test/1.jpg,cat,0.99,0.99,0.01
data/test/10.jpg,dog,0.8,0.2,0.8
data/test/2.jpg,dog,1,0,1
data/test/3.jpg,cat,0.65,0.65,0.35
"""

GOLDEN = """\
id,label
1,0.01
2,1
3,0.35
10,0.8
"""


def _run(*args, input=None):
    return CliRunner().invoke(cli, [str(a) for a in args], input=input)


@pytest.fixture
def preds(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("preds.csv").write_text(PREDS)
    return Path("preds.csv")


def _fails(result, *needles):
    assert result.exit_code == 1, result.output
    line = result.output.strip().splitlines()[-1]
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in line, line
    assert not Path("sub.csv").exists()
    return line


def test_default_is_dogs_vs_cats_id_label_sorted_by_number(preds):
    result = _run("submit", preds)
    assert result.exit_code == 0, result.output
    assert result.stdout == GOLDEN
    assert "4 rows, ids 1..10, mean label 0.5400 (from p_dog), not clipped" in result.stderr


def test_to_a_file_prints_its_path(preds):
    result = _run("submit", preds, "-o", "out/sub.csv")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "out/sub.csv"
    assert Path("out/sub.csv").read_text() == GOLDEN


def test_clip(preds):
    result = _run("submit", preds, "--clip", "0.005")
    assert result.exit_code == 0, result.output
    assert result.stdout == "id,label\n1,0.01\n2,0.995\n3,0.35\n10,0.8\n"
    assert "clipped to [0.005, 0.995] (1 changed)" in result.stderr
    assert _run("submit", preds, "--clip", "0.5").exit_code == 2


def test_sample_gives_header_ids_and_order(preds):
    # Ids as a spreadsheet may write them: padded, as floats, with spaces.
    Path("sample.csv").write_text("Id,PDog\n10.0,0.5\n 3,0.5\n2,0.5\n0001,0.5\n")
    result = _run("submit", preds, "--sample", "sample.csv", "-o", "sub.csv")
    assert result.exit_code == 0, result.output
    assert Path("sub.csv").read_text() == "Id,PDog\n10.0,0.8\n 3,0.35\n2,1\n0001,0.01\n"


def test_column_and_id_from(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("p.csv").write_text(
        "path,label,confidence,p_a,p_b,p_c\nx/u.png,a,0.5,0.5,0.3,0.2\nx/v.png,c,0.6,0.1,0.3,0.6\n"
    )
    line = _fails(_run("submit", "p.csv"), "3 probability columns (p_a, p_b, p_c)", "--column")
    assert line.endswith(
        "p.csv: 3 probability columns (p_a, p_b, p_c); name the one to submit with --column"
    )
    result = _run("submit", "p.csv", "--column", "c", "--id-from", "name")
    assert result.stdout == "id,label\nu.png,0.2\nv.png,0.6\n"
    assert "2 rows, ids u.png..v.png, mean label 0.4000 (from p_c), not clipped" in result.stderr
    assert _run("submit", "p.csv", "--column", "p_a").stdout == "id,label\nu,0.5\nv,0.1\n"
    _fails(_run("submit", "p.csv", "--column", "d"), "no probability column 'd'")


def test_a_probability_of_0_is_kept(preds):
    result = _run("submit", preds, "--column", "cat")
    assert result.exit_code == 0, result.output
    assert result.stdout == "id,label\n1,0.99\n2,0\n3,0.65\n10,0.2\n"


def test_reads_stdin(preds):
    result = _run("submit", "-", input=PREDS)
    assert result.exit_code == 0, result.output
    assert result.stdout == GOLDEN


# --- every bad input: exit 1, one line, nothing written ------------------------------


def test_missing_ids(preds):
    Path("sample.csv").write_text("id,label\n" + "".join(f"{i},0.5\n" for i in range(1, 16)))
    _fails(
        _run("submit", preds, "--sample", "sample.csv", "-o", "sub.csv"),
        "sample.csv: 11 ids of the sample have no prediction (4, 5, 6, ...)",
    )


def test_extra_ids(preds):
    Path("sample.csv").write_text("id,label\n1,0.5\n2,0.5\n")
    _fails(
        _run("submit", preds, "--sample", "sample.csv", "-o", "sub.csv"),
        "2 predicted ids are not in the sample (10, 3)",
    )


def test_three_extra_ids_are_all_named(preds):
    Path("sample.csv").write_text("id,label\n1,0.5\n")
    line = _fails(_run("submit", preds, "--sample", "sample.csv", "-o", "sub.csv"))
    assert line.endswith("sample.csv: 3 predicted ids are not in the sample (10, 2, 3)")


def test_no_path_column_or_no_rows():
    # The command says so before; a caller of the library gets the same checks.
    with pytest.raises(BadInputError, match="p.csv: no path column"):
        make_submission(pd.DataFrame({"file": ["1.jpg"], "p_dog": [0.5]}), preds_name="p.csv")
    empty = pd.DataFrame({"path": [], "p_cat": [], "p_dog": []})
    with pytest.raises(BadInputError, match="p.csv: no predictions"):
        make_submission(empty, preds_name="p.csv")


def test_clip_bounds_and_line_breaks_in_the_library():
    df = pd.DataFrame({"path": ["a/1.jpg", "a/2.jpg"], "p_cat": [1.0, 0.4], "p_dog": [0.0, 0.6]})
    for clip in (None, 0):  # clip 0 is allowed and changes nothing
        sub = make_submission(df, clip=clip)
        assert sub.clipped == 0 and sub.frame["label"].tolist() == [0.0, 0.6]
    with pytest.raises(ValueError, match=r"clip must be in \[0, 0.5\)"):
        make_submission(df, clip=0.5)
    # Values at the bounds are not changed, so not counted.
    edges = pd.DataFrame(
        {"path": ["1", "2", "3"], "p_a": [0.75, 0.25, 0.9], "p_b": [0.25, 0.75, 0.1]}
    )
    sub = make_submission(edges, clip=0.25)
    assert sub.clipped == 1 and sub.frame["label"].tolist() == [0.25, 0.75, 0.25]
    # A line break in an id or a header is named with the file it came from.
    with pytest.raises(BadInputError, match="p.csv: 1 id or column name"):
        make_submission(df.assign(path=["a/1\r.jpg", "a/2.jpg"]), preds_name="p.csv")
    sample = pd.DataFrame({"id": ["1", "2"], "la\nbel": ["0.5", "0.5"]})
    with pytest.raises(BadInputError, match="s.csv: 1 id or column name"):
        make_submission(df, sample=sample, preds_name="p.csv", sample_name="s.csv")


def test_duplicate_ids_in_predictions(preds):
    Path("dup.csv").write_text(PREDS + "other/10.png,dog,0.7,0.3,0.7\n")
    _fails(_run("submit", "dup.csv", "-o", "sub.csv"), "1 id appears more than once (10 (2 rows))")


def test_duplicate_ids_in_the_sample(preds):
    Path("sample.csv").write_text("id,label\n1,0.5\n2,0.5\n3,.5\n10,.5\n3.0,.5\n")
    _fails(
        _run("submit", preds, "--sample", "sample.csv", "-o", "sub.csv"),
        "sample.csv: 1 id appears more than once (3 (2 rows))",
    )


@pytest.mark.parametrize("value", ["", "nan", "high"])
def test_nan(preds, value):
    Path("bad.csv").write_text(PREDS.replace("0.65,0.35", f"0.65,{value}"))
    _fails(
        _run("submit", "bad.csv", "-o", "sub.csv"),
        "1 value of p_dog is missing or not a number (NaN) (data/test/3.jpg",
    )


@pytest.mark.parametrize("value", ["1.5", "-0.1", "inf"])
def test_outside_0_1(preds, value):
    Path("bad.csv").write_text(PREDS.replace("0.65,0.35", f"0.65,{value}"))
    _fails(
        _run("submit", "bad.csv", "-o", "sub.csv"), "bad.csv: 1 value of p_dog is outside [0, 1]"
    )


def test_sample_with_other_than_two_columns(preds):
    Path("sample.csv").write_text("id,cat,dog\n1,0.5,0.5\n")
    _fails(_run("submit", preds, "--sample", "sample.csv"), "needs two columns")


# --- pieces ---------------------------------------------------------------------------


def test_ids():
    assert id_of("data/test/12500.jpg") == "12500"
    assert id_of("C:\\kaggle\\test\\7.jpg") == "7"
    assert id_of("cat.12.jpg") == "cat.12"
    assert id_of("a/b.jpg", "name") == "b.jpg" and id_of("a/b.jpg", "path") == "a/b.jpg"
    assert id_key("12500") == id_key(" 12500 ") == id_key("12500.0") == id_key("012500")
    assert id_key(12500) == "12500"
    assert id_key("12500.5") != id_key("12500") and id_key(" ab ") == "ab"
    # A name that is all extension, or has none, is its own id.
    assert id_of("x/.jpg") == ".jpg" and id_of("x/README") == "README"
    with pytest.raises(ValueError, match="id_from must be one of"):
        id_of("a/b.jpg", "suffix")


def test_submit_never_imports_tensorflow(preds):
    code = (
        "import sys\n"
        "from imgkit.commands import main\n"
        "rc = main(['submit', 'preds.csv', '-o', 'sub.csv'])\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'jax', 'torch') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "sys.exit(rc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert Path("sub.csv").read_text() == GOLDEN
