"""Classification's arithmetic: a bundle's model outputs as calibrated probabilities and rows.

:class:`Predictor` turns a batch of images into probabilities with the bundle's
temperature; :func:`prediction_frame` turns them into rows whose columns are
``path,label,confidence,p_<class>...`` in the bundle's class order, the label chosen
with the bundle's decision threshold. What is read, and how, is
:mod:`imgkit.infer.plan` and :mod:`imgkit.infer.engine`; ``predict`` and ``tta`` run
through :func:`imgkit.infer.run.predict_inputs`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from imgkit.errors import BadBundleError

# CSV number format: 6 significant digits keep tiny probabilities (which log loss
# needs) without writing 17 digits per value.
FLOAT_FORMAT = "%.6g"

# --- probabilities and rows (shared with tta) -----------------------------------------


def csv_columns(classes: Sequence[str], multilabel: bool = False) -> list[str]:
    """The predictions CSV header for these classes (multi-label: path,labels,p_<label>...)."""
    if multilabel:
        return ["path", "labels", *[f"p_{c}" for c in classes]]
    return ["path", "label", "confidence", *[f"p_{c}" for c in classes]]


def to_probabilities(outputs: np.ndarray, output: str, num_classes: int) -> np.ndarray:
    """Turn raw model outputs into an (n, num_classes) probability array.

    Args:
        outputs: what the model returned for a batch.
        output: "softmax" (one column per class), "sigmoid" (one unit, the
            probability of ``classes[1]``) or "multilabel" (one sigmoid per class).
        num_classes: how many classes the bundle names.

    Raises:
        BadBundleError: the outputs do not fit the bundle's classes.
    """
    out = np.asarray(outputs, dtype=np.float64)
    out = out.reshape(len(out), -1)
    if output == "sigmoid":
        if out.shape[1] != 1 or num_classes != 2:
            raise BadBundleError(
                f"a sigmoid bundle needs one output unit and two classes "
                f"(got {out.shape[1]} outputs, {num_classes} classes)"
            )
        p = out[:, 0]
        return np.stack([1.0 - p, p], axis=1)
    if out.shape[1] != num_classes:
        # softmax and multilabel alike: one column per class.
        raise BadBundleError(
            f"the model has {out.shape[1]} outputs but the bundle names {num_classes} classes"
        )
    return out


def apply_temperature(proba: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Soften (T > 1) or sharpen (T < 1) probabilities: softmax(log(p) / T).

    Log-probabilities differ from the logits only by a per-row constant, which the
    softmax removes, so dividing them by T is the same as dividing the logits. The
    arithmetic is :func:`imgkit.train.calibration.temper`, the function that fitted T.
    """
    from imgkit.train.calibration import temper

    proba = np.asarray(proba, dtype=np.float64)
    if temperature <= 0:
        raise BadBundleError(f"temperature must be positive (got {temperature})")
    return temper(proba, temperature)


def prediction_frame(
    paths: Sequence[str],
    proba: np.ndarray,
    classes: Sequence[str],
    threshold: float | None = None,
) -> pd.DataFrame:
    """One predictions-CSV row per image: path, chosen label, its probability, all of them.

    The label is the most probable class, or, for two classes with a ``threshold``
    (a binary bundle's decision threshold), ``classes[1]`` when its probability reaches
    the threshold; the confidence is always the chosen label's probability.
    """
    proba = np.asarray(proba, dtype=np.float64)
    top = proba.argmax(axis=1)
    if threshold is not None and proba.shape[1] == 2:
        top = (proba[:, 1] >= float(threshold)).astype(int)
    df = pd.DataFrame(proba, columns=[f"p_{c}" for c in classes])
    df.insert(0, "confidence", proba[np.arange(len(top)), top])
    df.insert(0, "label", [classes[i] for i in top])
    df.insert(0, "path", [str(p) for p in paths])
    return df


def multilabel_frame(
    paths: Sequence[str], proba: np.ndarray, classes: Sequence[str], thresholds: Sequence[float]
) -> pd.DataFrame:
    """Multi-label rows: path, the labels whose probability reaches their threshold
    (space-separated, in class order; empty when none does), every label's probability."""
    proba = np.asarray(proba, dtype=np.float64)
    chosen = proba >= np.asarray(thresholds, dtype=np.float64)[None, :]
    df = pd.DataFrame(proba, columns=[f"p_{c}" for c in classes])
    df.insert(0, "labels", [" ".join(c for c, on in zip(classes, row, strict=True) if on)
                            for row in chosen])  # fmt: skip
    df.insert(0, "path", [str(p) for p in paths])
    return df


def frame_to_csv(df: pd.DataFrame, header: bool) -> str:
    """Format prediction rows as CSV text (the one format every writer uses)."""
    return df.to_csv(index=False, header=header, float_format=FLOAT_FORMAT, lineterminator="\n")


# --- the model ------------------------------------------------------------------------


class Predictor:
    """A bundle's model with its output handling: arrays in, probabilities out.

    ``calibrated`` False gives the model's own probabilities (temperature 1), with the
    bundle's decision threshold carried over to them so the same labels result.
    """

    def __init__(self, bundle, calibrated: bool = True):
        self.bundle = bundle
        self.classes = list(bundle.classes)
        self.output = bundle.output
        if self.output not in ("softmax", "sigmoid", "multilabel"):
            raise BadBundleError(f"{bundle.path}: unknown output {self.output!r} in the bundle")
        self.temperature = bundle.temperature
        # A binary bundle's decision threshold on P(classes[1]) (imgkit.train.thresholds).
        self.threshold = bundle.threshold
        self.multilabel = self.output == "multilabel"
        # A multi-label bundle's per-label thresholds, on tempered probabilities.
        self.thresholds = bundle.thresholds if self.multilabel else None
        if self.multilabel and self.thresholds is None:
            raise BadBundleError(f"{bundle.path}: a multi-label bundle without thresholds")
        if not calibrated:
            if self.thresholds is not None:
                from imgkit.train.thresholds import raw_threshold

                # Each label is its own binary case: the same labels result.
                self.thresholds = [raw_threshold(t, self.temperature) for t in self.thresholds]
            if self.threshold is not None:
                from imgkit.train.thresholds import raw_threshold

                # The threshold was chosen on tempered probabilities: the same labels result.
                self.threshold = raw_threshold(self.threshold, self.temperature)
            self.temperature = 1.0

    def raw_proba(self, arrays: np.ndarray) -> np.ndarray:
        """The model's probabilities (n, k), before the bundle's temperature.

        One forward pass for the whole array, however many images it holds.
        """
        x = np.asarray(arrays, dtype=np.float32)
        raw = self.bundle.model.predict_on_batch(x)
        return to_probabilities(np.asarray(raw), self.output, len(self.classes))

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        """The bundle's temperature applied to raw probabilities: one softmax (or
        sigmoid pair) per row, or each multi-label probability's logit on its own."""
        if self.multilabel:
            from imgkit.train.multilabel_scores import temper

            return temper(raw, self.temperature)
        return apply_temperature(raw, self.temperature)

    def proba(self, arrays: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (n, k) for a batch of uint8 images in the bundle's format."""
        return self.calibrate(self.raw_proba(arrays))

    def rows(self, paths: Sequence, proba: np.ndarray) -> pd.DataFrame:
        """Prediction rows for calibrated probabilities (columns as :func:`csv_columns`)."""
        if self.multilabel:
            return multilabel_frame(paths, proba, self.classes, self.thresholds)
        return prediction_frame(paths, proba, self.classes, self.threshold)

    def frame(self, paths: Sequence, arrays: np.ndarray) -> pd.DataFrame:
        """Prediction rows for a batch of images (``paths`` name them)."""
        return self.rows(paths, self.proba(arrays))
