"""imgkit blend: the same images averaged, checked, weighted, and weights fitted on OOF."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from cli_helpers import invoke, one_line_error

from imgkit.evaluate.blend import combine, fit_blend, fit_weights
from imgkit.train.calibration import log_loss, temper

PATHS = [f"img/{i}.png" for i in range(6)]


def _write(path, p_b, paths=PATHS, classes=("a", "b")):
    p_b = np.asarray(p_b, dtype=float)
    df = pd.DataFrame({"path": paths, "label": "", "confidence": 0.0})
    df[f"p_{classes[0]}"] = 1 - p_b
    df[f"p_{classes[1]}"] = p_b
    df.to_csv(path, index=False)
    return path


def test_mean_blend_with_weights_aligns_rows_and_columns(tmp_path):
    a = _write(tmp_path / "a.csv", [0.9, 0.8, 0.1, 0.2, 0.6, 0.4])
    # Rows shuffled and the class columns swapped: aligned by path and class name.
    order = [5, 4, 3, 2, 1, 0]
    b = pd.DataFrame({"path": [PATHS[i] for i in order], "label": "", "confidence": 0.0})
    b_by_path = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    b["p_b"] = b_by_path[order]
    b["p_a"] = 1 - b["p_b"]
    b.to_csv(tmp_path / "b.csv", index=False)
    result = invoke("blend", a, tmp_path / "b.csv", "--weights", "3,1", "-o", tmp_path / "o.csv")
    assert result.exit_code == 0, result.output
    out = pd.read_csv(tmp_path / "o.csv")
    assert out["path"].tolist() == PATHS
    expected = 0.75 * np.array([0.9, 0.8, 0.1, 0.2, 0.6, 0.4]) + 0.25 * b_by_path
    np.testing.assert_allclose(out["p_b"], expected, rtol=1e-5)
    assert out["label"].tolist() == ["b", "b", "a", "a", "b", "a"]


def test_geometric_and_rank_methods():
    p1 = np.array([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8]])
    p2 = np.array([[0.6, 0.4], [0.1, 0.9], [0.3, 0.7]])
    g = combine([p1, p2], np.array([0.5, 0.5]), "geometric")
    raw = np.sqrt(p1 * p2)
    np.testing.assert_allclose(g, raw / raw.sum(axis=1, keepdims=True))
    r = combine([p1, p2], np.array([0.5, 0.5]), "rank")
    np.testing.assert_allclose(r.sum(axis=1), 1.0)
    # Model 1 ranks image 3 highest for class 1, model 2 image 2: both above image 1.
    assert r[0, 1] < r[1, 1] and r[0, 1] < r[2, 1]


def test_other_images_or_classes_are_refused_in_one_line(tmp_path):
    a = _write(tmp_path / "a.csv", np.linspace(0.1, 0.9, 6))
    fewer = _write(tmp_path / "fewer.csv", np.linspace(0.1, 0.9, 5), PATHS[:5])
    other = _write(tmp_path / "other.csv", np.linspace(0.1, 0.9, 6), classes=("a", "c"))
    one_line_error(invoke("blend", a, fewer), "fewer.csv", "no row for img/5.png")
    one_line_error(invoke("blend", fewer, a), "a.csv", "img/5.png is not in")
    one_line_error(invoke("blend", a, other), "other.csv", "classes")
    one_line_error(invoke("blend", a, a, "--weights", "1,2,3"), "3 weights for 2")


def test_fit_finds_the_weights_that_minimise_oof_log_loss(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    good = np.clip(0.8 * y + 0.1 + rng.normal(0, 0.05, 400), 0.01, 0.99)
    noisy = np.clip(0.5 + 0.3 * (2 * y - 1) * rng.choice([1, -1], 400, p=[0.7, 0.3]), 0.01, 0.99)
    probas = [np.stack([1 - p, p], axis=1) for p in (good, noisy)]
    w = fit_weights(probas, y, "mean")
    assert w[0] > 0.8 and w.sum() == pytest.approx(1.0)

    def loss(weights):
        p = combine(probas, weights, "mean")
        return -np.mean(np.log(p[np.arange(400), y]))

    best_on_grid = min(loss(np.array([t, 1 - t])) for t in np.linspace(0, 1, 201))
    assert loss(w) <= best_on_grid + 1e-4

    paths = [f"img/{i}.png" for i in range(400)]
    truth = tmp_path / "truth.csv"
    pd.DataFrame({"path": paths, "label": np.where(y == 1, "b", "a")}).to_csv(truth, index=False)
    oof = [_write(tmp_path / f"oof{i}.csv", p, paths) for i, p in enumerate((good, noisy))]
    test = [_write(tmp_path / f"t{i}.csv", p, paths) for i, p in enumerate((good, noisy))]
    result = invoke("blend", *test, "--fit", f"{oof[0]},{oof[1]}", "--truth", truth)
    assert result.exit_code == 0, result.output
    assert "blended" in result.stderr and f"weights {w[0]:.3f}" in result.stderr
    usage = invoke("blend", *test, "--fit", str(oof[0]))
    assert usage.exit_code == 2 and "--fit and --truth go together" in usage.stderr


def test_fit_tempers_the_under_confident_mean_of_two_calibrated_models(tmp_path):
    # Two calibrated models with independent errors: their mean is pulled toward 0.5
    # where they disagree, and the temperature fitted on the OOF blend sharpens it.
    rng = np.random.default_rng(1)
    n = 2000
    signal = rng.normal(0, 1.5, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-2 * signal))).astype(int)
    members = [1 / (1 + np.exp(-(signal + rng.normal(0, 1.0, n)))) for _ in range(2)]
    probas = [np.stack([1 - p, p], axis=1) for p in members]
    w, temperature = fit_blend(probas, y, "mean")
    assert temperature < 0.95
    raw = combine(probas, w, "mean")
    assert log_loss(temper(raw, temperature), y) < log_loss(raw, y) - 1e-3
    assert fit_blend(probas, y, "rank")[1] == 1.0

    paths = [f"img/{i}.png" for i in range(n)]
    truth = tmp_path / "truth.csv"
    pd.DataFrame({"path": paths, "label": np.where(y == 1, "b", "a")}).to_csv(truth, index=False)
    files = [_write(tmp_path / f"m{i}.csv", p, paths) for i, p in enumerate(members)]
    out = tmp_path / "blend.csv"
    result = invoke("blend", *files, "--fit", f"{files[0]},{files[1]}", "--truth", truth,
                    "-o", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"temperature {temperature:g}" in result.stderr
    expected = temper(raw, temperature)[:, 1]
    np.testing.assert_allclose(pd.read_csv(out)["p_b"], expected, atol=2e-6)
