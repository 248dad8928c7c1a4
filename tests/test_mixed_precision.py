"""Mixed precision: float16 inside, float32 out, for every registered model.

Under ``mixed_float16`` a layer computes in float16 unless it says otherwise. A
softmax or sigmoid in float16 rounds small probabilities to 0 (log loss, calibration,
thresholds) and saturates near 1, so every model's output layer must compute in
float32. The registry is walked, so a model added later is checked too.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from tiny_data import SIZE, make_dataset

from imgkit.commands import cli
from imgkit.models import create_model, get_spec, list_models

# The smallest size every registered model builds at: the U-Net needs a multiple of
# 32, MobileNetV2 and VGG16 at least 32.
SMALL = 32


@pytest.fixture
def mixed_policy():
    """The mixed_float16 global policy for one test; float32 again however it ends."""
    import keras

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _small_size(name: str) -> tuple[int, int]:
    side = max(SMALL, get_spec(name).min_size)
    side = -(-side // 32) * 32  # round up to a multiple of 32
    return side, side


@pytest.mark.parametrize("name", list_models())
def test_every_model_outputs_float32_under_mixed_precision(name, mixed_policy):
    import keras

    spec = get_spec(name)
    options = {"weights": "none"} if spec.takes_weights else {}
    size = _small_size(name)
    model = create_model(name, 2, size, spec.channels, **options)

    # The policy really reached the model: some layer computes in float16 ...
    compute = {layer.dtype_policy.compute_dtype for layer in _all_layers(model)}
    assert "float16" in compute, f"{name}: nothing computes in float16 ({compute})"
    # ... but not the output layer.
    assert model.outputs[0].dtype == "float32", f"{name}: output is {model.outputs[0].dtype}"
    last = model.layers[-1]
    assert last.dtype_policy.compute_dtype == "float32", f"{name}: {last.name} computes in float16"

    x = np.random.default_rng(0).integers(0, 256, (2, *size, spec.channels)).astype("uint8")
    y = keras.ops.convert_to_numpy(model(x, training=False))
    assert y.dtype == np.float32
    assert np.isfinite(y).all() and (y >= 0).all() and (y <= 1).all()


def _all_layers(model):
    """Every layer, nested models (the pretrained backbones) included."""
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


def test_train_with_mixed_precision_then_predict(tmp_path):
    make_dataset(tmp_path / "data")
    run = tmp_path / "run"
    runner = CliRunner()
    trained = runner.invoke(
        cli,
        ["train", str(tmp_path / "data"), "-o", str(run), "--model", "small-cnn",
         "--epochs", "2", "--batch-size", "8", "--size", f"{SIZE}x{SIZE}",
         "--mixed-precision", "on"],
    )  # fmt: skip
    assert trained.exit_code == 0, trained.output
    assert "mixed precision" in trained.stderr
    meta = json.loads((run / "imgkit.json").read_text())
    assert meta["mixed_precision"] is True
    assert meta["train_args"]["mixed_precision"] == "on"
    assert np.isfinite(meta["metrics"]["val"]["log_loss"])

    # Training restored the process-wide policy.
    import keras

    assert keras.mixed_precision.global_policy().name == "float32"

    predicted = runner.invoke(cli, ["predict", str(run), str(tmp_path / "data"), "--split", "test"])
    assert predicted.exit_code == 0, predicted.output
    df = pd.read_csv(io.StringIO(predicted.stdout))
    assert list(df.columns) == ["path", "label", "confidence", "p_bright", "p_dim"]
    assert len(df) == 8
    probs = df[["p_bright", "p_dim"]].to_numpy()
    assert np.isfinite(probs).all() and (probs >= 0).all() and (probs <= 1).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(df["confidence"], probs.max(axis=1))
    expected = np.where(probs[:, 1] > probs[:, 0], "dim", "bright")
    assert list(df["label"]) == list(expected)
