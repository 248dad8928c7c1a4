"""imgkit eval and imgkit.evaluate.metrics: hand-computed scores, matching, gates, outputs.

No model is needed: predictions are CSVs written here, and the truth a dataset folder
(its manifest only) or a CSV.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from imgkit.commands import cli
from imgkit.data.dataset_write import write_dataset
from imgkit.data.records import Record
from imgkit.evaluate.metrics import (
    average_precision,
    check_gates,
    comparison_frame,
    confusion_matrix,
    evaluate,
    log_loss,
    per_class_scores,
    roc_auc,
)

# Six images of three classes; three of them right.
#   true   a a a b b c
#   pred   a a b b c c
CLASSES = ["a", "b", "c"]
Y_TRUE = np.array([0, 0, 0, 1, 1, 2])
Y_PRED = np.array([0, 0, 1, 1, 2, 2])
PROBA = np.array(
    [
        [0.8, 0.1, 0.1],
        [0.6, 0.3, 0.1],
        [0.3, 0.6, 0.1],
        [0.2, 0.7, 0.1],
        [0.1, 0.4, 0.5],
        [0.05, 0.05, 0.9],
    ]
)


def test_confusion_and_per_class_by_hand():
    m = confusion_matrix(Y_TRUE, Y_PRED, 3)
    np.testing.assert_array_equal(m, [[2, 1, 0], [0, 1, 1], [0, 0, 1]])
    s = per_class_scores(m)
    np.testing.assert_allclose(s["precision"], [1, 1 / 2, 1 / 2])
    np.testing.assert_allclose(s["recall"], [2 / 3, 1 / 2, 1])
    # F1 = 2PR / (P + R): a = (4/3) / (5/3)
    np.testing.assert_allclose(s["f1"], [0.8, 0.5, 2 / 3])
    np.testing.assert_array_equal(s["support"], [3, 2, 1])


def test_confusion_matrix_takes_lists_and_whole_floats():
    # Labels as read from a CSV column: a list, or floats that are whole numbers.
    want = [[1, 0], [1, 1]]
    np.testing.assert_array_equal(confusion_matrix([0, 1, 1], [0, 1, 0], 2), want)
    np.testing.assert_array_equal(confusion_matrix([0, 1, 1], np.array([0.0, 1.0, 0.0]), 2), want)
    np.testing.assert_array_equal(per_class_scores(want)["recall"], [1, 0.5])
    proba = [[0.8, 0.2], [0.4, 0.6]]
    assert log_loss(np.array([0.0, 1.0]), proba) == pytest.approx(-np.log(0.8 * 0.6) / 2)


def test_summary_by_hand():
    r = evaluate(Y_TRUE, Y_PRED, CLASSES, PROBA)
    s = r.summary
    assert s["n"] == 6
    assert s["accuracy"] == pytest.approx(4 / 6)
    assert s["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert s["weighted_f1"] == pytest.approx((0.8 * 3 + 0.5 * 2 + 2 / 3 * 1) / 6)
    assert s["macro_precision"] == pytest.approx(2 / 3)
    assert s["macro_recall"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    want = -(math.log(0.8 * 0.6 * 0.3 * 0.7 * 0.4 * 0.9)) / 6
    assert s["log_loss"] == pytest.approx(want)
    assert "roc_auc" not in s and "balanced_accuracy" not in s  # binary only
    assert s["per_class"]["a"] == {"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3}
    assert s["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_log_loss_clips_and_renormalises():
    # A confident mistake costs -log(1e-15), not infinity.
    assert log_loss([1], [[1.0, 0.0]]) == pytest.approx(-math.log(1e-15))
    # Rows that do not sum to 1 (rounded CSVs) are renormalised first.
    assert log_loss([0], [[0.2, 0.2]]) == pytest.approx(math.log(2))


def test_binary_auc_and_average_precision_known_answers():
    y = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    assert roc_auc(y == 1, scores) == pytest.approx(0.75)
    # thresholds .8 (P 1, R .5), .4 (P .5, R .5), .35 (P 2/3, R 1): .5*1 + .5*2/3
    assert average_precision(y == 1, scores) == pytest.approx(5 / 6)
    # Ties count one half: pairs (.5,.5)=.5, (.5,.2)=1, (.9,.5)=1, (.9,.2)=1
    assert roc_auc(np.array([0, 1, 0, 1]) == 1, np.array([0.5, 0.5, 0.2, 0.9])) == 0.875
    assert roc_auc(np.array([True, True]), np.array([0.1, 0.2])) is None


def test_binary_summary():
    y_true = np.array([0, 0, 0, 1])
    y_pred = np.array([0, 0, 1, 1])
    p1 = np.array([0.1, 0.3, 0.6, 0.9])
    s = evaluate(y_true, y_pred, ["cat", "dog"], np.stack([1 - p1, p1], axis=1)).summary
    assert s["balanced_accuracy"] == pytest.approx((2 / 3 + 1) / 2)
    assert s["roc_auc"] == 1.0 and s["pr_auc"] == 1.0
    assert s["positive_class"] == "dog"


def test_absent_classes_score_0_and_stay_out_of_macro_averages():
    # "c" is predicted once but never true; "d" is neither true nor predicted.
    r = evaluate([0, 0, 1, 1], [0, 2, 1, 1], ["a", "b", "c", "d"])
    np.testing.assert_array_equal(r.per_class["precision"], [1, 1, 0, 0])
    np.testing.assert_array_equal(r.per_class["recall"], [0.5, 1, 0, 0])  # 0/0 is 0, not NaN
    np.testing.assert_allclose(r.per_class["f1"], [2 / 3, 1, 0, 0])
    s = r.summary
    assert s["accuracy"] == 0.75
    assert s["macro_precision"] == pytest.approx(2 / 3)  # over a, b, c: d is not seen
    assert s["macro_recall"] == pytest.approx(0.5)
    assert s["macro_f1"] == pytest.approx(5 / 9)
    assert s["weighted_f1"] == pytest.approx((2 / 3 * 2 + 1 * 2) / 4)
    frame = r.confusion_frame()
    assert list(frame.columns) == ["true", "a", "b", "c", "d"]
    # A class seen once in the truth and never predicted counts (its recall is 0).
    assert evaluate([0, 1], [0, 0], ["a", "b", "c"]).summary["macro_recall"] == 0.5
    assert evaluate([0, 0], [0, 1], ["a", "b", "c"]).summary["macro_precision"] == 0.5
    assert frame.iloc[0].tolist() == ["a", 1, 0, 1, 0]


def test_one_image_scores_and_none_is_an_error():
    r = evaluate([1], [1], ("a", "b"))  # classes as any sequence
    assert r.summary["accuracy"] == 1.0 and r.summary["classes"] == r.classes == ["a", "b"]
    with pytest.raises(ValueError, match="no predictions to score"):
        evaluate([], [], ["a", "b"])


def test_binary_with_one_class_present():
    # No dog at all: balanced accuracy is the cats' recall alone; the AUCs are undefined.
    p1 = np.array([0.2, 0.7])
    s = evaluate([0, 0], [0, 1], ["cat", "dog"], np.stack([1 - p1, p1], axis=1)).summary
    assert s["balanced_accuracy"] == 0.5
    assert "roc_auc" not in s and "pr_auc" not in s
    assert average_precision(np.array([False, False]), p1) is None


def test_average_precision_with_tied_scores():
    # One threshold per distinct score: .5 takes both tied images (P 1/2, R 1/2), .2 the
    # rest (P 2/3, R 1): .5 * 1/2 + .5 * 2/3.
    y = np.array([True, False, True])
    assert average_precision(y, np.array([0.5, 0.5, 0.2])) == pytest.approx(0.25 + 1 / 3)
    assert roc_auc(y, np.array([0.5, 0.5, 0.2])) == pytest.approx(0.25)
    assert average_precision([False, True], [0.9, 0.1]) == 0.5  # plain lists too


def test_comparison_frame_and_gates_by_hand():
    a = {"n": 6, "accuracy": 0.5, "log_loss": 0.7, "per_class": {}}
    b = {"n": 4, "accuracy": 0.75, "roc_auc": 0.9}
    df = comparison_frame([a, b], ["a.csv", "b.csv"])
    assert list(df.columns) == ["predictions", "n", "accuracy", "log_loss", "roc_auc"]
    assert df["predictions"].tolist() == ["a.csv", "b.csv"]
    assert df["accuracy"].tolist() == [0.5, 0.75] and df["n"].tolist() == [6, 4]
    assert df["log_loss"].isna().tolist() == [False, True]
    assert df["roc_auc"].isna().tolist() == [True, False]
    # A value equal to its bar passes; one below fails, with both numbers.
    bars = {"accuracy": 0.5, "macro_f1": 0.41}
    assert check_gates({"accuracy": 0.5, "macro_f1": 0.4}, bars) == [
        "macro_f1 0.4000 is below the bar 0.41"
    ]
    with pytest.raises(KeyError, match="roc_auc"):
        check_gates({"accuracy": 0.5}, {"roc_auc": 0.9})


# --- the command ----------------------------------------------------------------------


def _preds_csv(path: Path, paths, classes=CLASSES, proba=PROBA, y_pred=Y_PRED) -> Path:
    df = pd.DataFrame(proba, columns=[f"p_{c}" for c in classes])
    df.insert(0, "confidence", proba.max(axis=1))
    df.insert(0, "label", [classes[i] for i in y_pred])
    df.insert(0, "path", paths)
    df.to_csv(path, index=False)
    return path


@pytest.fixture
def data(tmp_path, monkeypatch):
    """A dataset folder whose six test images are the rows above (files not needed)."""
    monkeypatch.chdir(tmp_path)
    records = [Record(f"images/{i}.png", CLASSES[k], split="test") for i, k in enumerate(Y_TRUE)]
    records.append(Record("images/extra.png", "a", split="train"))
    write_dataset(tmp_path / "data", records, [])
    return Path("data")


def _run(*args, input=None):
    return CliRunner().invoke(cli, [str(a) for a in args], input=input)


def test_eval_prints_the_summary_json(data):
    # As `imgkit predict data` writes them: the dataset folder joined with the manifest.
    _preds_csv(Path("preds.csv"), [f"data/images/{i}.png" for i in range(6)])
    result = _run("eval", "preds.csv", "--truth", data)
    assert result.exit_code == 0, result.output
    s = json.loads(result.stdout)
    assert s["n"] == 6 and s["accuracy"] == pytest.approx(4 / 6)
    assert s["unmatched"] == 0 and s["classes"] == CLASSES
    assert "accuracy" in result.stderr and "macro_f1" in result.stderr  # the table


def test_eval_matches_paths_relative_to_the_dataset_and_absolute(data):
    paths = [f"images/{i}.png" for i in range(3)]
    paths += [str((data / f"images/{i}.png").resolve()) for i in range(3, 6)]
    _preds_csv(Path("preds.csv"), paths)
    result = _run("eval", "preds.csv", "--truth", data)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n"] == 6


def test_eval_reads_stdin_and_a_truth_csv(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    truth = pd.DataFrame(
        {"path": [f"x/{i}.png" for i in range(6)], "label": [CLASSES[k] for k in Y_TRUE]}
    )
    truth.to_csv("truth.csv", index=False)
    text = _preds_csv(tmp_path / "p.csv", [f"x/{i}.png" for i in range(6)]).read_text()
    result = _run("eval", "-", "--truth", "truth.csv", input=text)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["accuracy"] == pytest.approx(4 / 6)


CONFUSION_CSV = """\
true,a,b,c
a,2,1,0
b,0,1,1
c,0,0,1
"""


def test_eval_output_folder_has_its_files(data):
    _preds_csv(Path("preds.csv"), [f"data/images/{i}.png" for i in range(6)])
    result = _run("eval", "preds.csv", "--truth", data, "-o", "ev")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(Path("ev/metrics.json"))
    assert sorted(p.name for p in Path("ev").iterdir()) == [
        "confusion.csv",
        "confusion.png",
        "index.html",  # the gallery page (tests/test_report.py); these images are not files
        "metrics.json",
        "per_class.csv",
    ]
    assert Path("ev/confusion.csv").read_text() == CONFUSION_CSV
    per_class = pd.read_csv("ev/per_class.csv")
    assert list(per_class.columns) == ["class", "precision", "recall", "f1", "support"]
    assert per_class["f1"].tolist() == pytest.approx([0.8, 0.5, 2 / 3])
    assert json.loads(Path("ev/metrics.json").read_text())["accuracy"] == pytest.approx(4 / 6)
    assert Path("ev/confusion.png").read_bytes()[:4] == b"\x89PNG"


def test_gates(data):
    _preds_csv(Path("preds.csv"), [f"data/images/{i}.png" for i in range(6)])
    ok = _run("eval", "preds.csv", "--truth", data, "--fail-under", "accuracy=0.6")
    assert ok.exit_code == 0, ok.output
    bad = _run(
        "eval", "preds.csv", "--truth", data, "--fail-under", "accuracy=0.9",
        "--fail-under", "macro_f1=0.5",
    )  # fmt: skip
    assert bad.exit_code == 3
    assert "accuracy 0.6667 is below the bar 0.9" in bad.stderr
    assert "macro_f1" not in bad.stderr.splitlines()[-1]  # that one passed
    # The metrics are still printed when a gate fails.
    assert json.loads(bad.stdout)["accuracy"] == pytest.approx(4 / 6)


@pytest.mark.parametrize("bar", ["acuracy=0.9", "log_loss=0.5", "accuracy", "accuracy=high"])
def test_bad_gate_is_a_usage_error(data, bar):
    _preds_csv(Path("preds.csv"), [f"data/images/{i}.png" for i in range(6)])
    result = _run("eval", "preds.csv", "--truth", data, "--fail-under", bar)
    assert result.exit_code == 2
    assert "--fail-under" in result.output


def test_gate_on_a_metric_not_computed_is_a_usage_error(data):
    _preds_csv(Path("preds.csv"), [f"data/images/{i}.png" for i in range(6)])
    result = _run("eval", "preds.csv", "--truth", data, "--fail-under", "roc_auc=0.9")
    assert result.exit_code == 2
    assert "roc_auc" in result.output and "two classes" in result.output


def test_classes_of_another_task_are_a_clear_error(data):
    classes = ["x", "y", "z"]
    _preds_csv(Path("p.csv"), [f"data/images/{i}.png" for i in range(6)], classes=classes)
    result = _run("eval", "p.csv", "--truth", data)
    assert result.exit_code == 1
    assert "['x', 'y', 'z']" in result.output and "['a', 'b', 'c']" in result.output


def test_unmatched_rows_warn_and_no_match_is_an_error(data):
    paths = [f"data/images/{i}.png" for i in range(5)] + ["elsewhere/q.png"]
    _preds_csv(Path("p.csv"), paths)
    result = _run("eval", "p.csv", "--truth", data)
    assert result.exit_code == 0, result.output
    assert "1 predicted path(s) are not in the truth" in result.stderr
    assert "elsewhere/q.png" in result.stderr
    assert json.loads(result.stdout)["n"] == 5

    _preds_csv(Path("none.csv"), [f"other/{i}.png" for i in range(6)])
    result = _run("eval", "none.csv", "--truth", data)
    assert result.exit_code == 1
    assert "no predicted path is in the truth" in result.output


def test_eval_never_imports_tensorflow(data):
    _preds_csv(Path("preds.csv"), [f"data/images/{i}.png" for i in range(6)])
    code = (
        "import sys\n"
        "from imgkit.commands import main\n"
        "rc = main(['eval', 'preds.csv', '--truth', 'data', '-o', 'ev'])\n"
        "heavy = [m for m in ('tensorflow', 'keras') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "sys.exit(rc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
