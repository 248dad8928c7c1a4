"""Bundles whose model carries code (Lambda layers): refused in one line unless trusted.

A Lambda layer's function is Python bytecode stored in model.keras and run as Keras
rebuilds the model, so loading one is running the bundle author's code. The bundles
here compute brightness (like test_predict's) with a Lambda layer in the middle, so
what a trusted load predicts can be worked out by hand.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image
from tiny_bundles import bundle_meta

from imgkit.bundle import TRUST_ENV, code_layers, load_bundle
from imgkit.commands import cli
from imgkit.errors import UntrustedCodeError
from imgkit.models import create_model, get_spec, list_models
from imgkit.models.applications import APPLICATIONS

SIZE = 8


def _meta(task: str, classes: list[str], channels: int) -> dict:
    return bundle_meta(
        task, model="lambda-brightness", classes=classes, channels=channels, polarity=None
    )


def _save(folder: Path, model, meta: dict) -> Path:
    folder.mkdir(parents=True)
    model.save(folder / "model.keras")
    (folder / "imgkit.json").write_text(json.dumps(meta), encoding="utf-8")
    return folder


def _classifier(folder: Path) -> Path:
    """P(lit) rises with mean brightness: logit(lit) - logit(dim) = 2 * (20 * mean - 10)."""
    import keras

    inputs = keras.Input((SIZE, SIZE, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Lambda(lambda t: t * 20.0 - 10.0, name="brightness_logit")(x)
    dense = keras.layers.Dense(2, activation="softmax")
    out = dense(x)
    dense.set_weights([np.array([[-1.0, 1.0]]), np.zeros(2)])
    return _save(folder, keras.Model(inputs, out), _meta("classification", ["dim", "lit"], 1))


def _segmenter(folder: Path) -> Path:
    """P(object) is the pixel's brightness: a white image is all object."""
    import keras

    inputs = keras.Input((SIZE, SIZE, 3))
    out = keras.layers.Lambda(lambda t: t[..., :1] / 255.0, name="first_channel")(inputs)
    meta = _meta("segmentation", ["background", "object"], 3)
    return _save(folder, keras.Model(inputs, out), meta)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("lambda")
    return {"classify": _classifier(root / "classify"), "segment": _segmenter(root / "segment")}


@pytest.fixture(autouse=True)
def no_trust_in_env(monkeypatch):
    # A developer's shell may have it set; every test says what it wants.
    monkeypatch.delenv(TRUST_ENV, raising=False)


@pytest.fixture
def images(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("imgs").mkdir()
    Image.new("L", (SIZE, SIZE), 0).save("imgs/a_black.png")
    Image.new("L", (SIZE, SIZE), 255).save("imgs/b_white.png")
    return Path("imgs")


def _args(command: str, bundles) -> list[str]:
    if command == "segment":
        return ["segment", str(bundles["segment"]), "imgs", "-o", "masks"]
    return [command, str(bundles["classify"]), "imgs"]


def _run(args, env=None):
    return CliRunner().invoke(cli, args, env=env)


# --- refused ----------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["predict", "tta", "segment"])
def test_lambda_bundle_is_refused_in_one_line(bundles, images, command):
    result = _run(_args(command, bundles))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    layer = "first_channel" if command == "segment" else "brightness_logit"
    assert lines[0] == (
        f"Error: {Path(_args(command, bundles)[1]) / 'model.keras'}: the model contains code "
        f"(a Lambda layer {layer!r}) that imgkit does not run unless told to; load only "
        "bundles you trust, and for one you trust add --trust-code (or set IMGKIT_TRUST_CODE=1)"
    )
    assert not Path("masks").is_dir() or not any(Path("masks").glob("*.png"))


@pytest.mark.parametrize("value", ["0", "", "no"])
def test_env_var_other_than_yes_does_not_trust(bundles, images, value):
    result = _run(_args("predict", bundles), env={TRUST_ENV: value})
    assert result.exit_code == 1
    assert "contains code" in result.stderr


@pytest.mark.parametrize("command", ["predict", "tta", "segment"])
def test_help_explains_the_flag(command):
    result = _run([command, "--help"])
    assert result.exit_code == 0, result.output
    assert "--trust-code" in result.output and "IMGKIT_TRUST_CODE=1" in result.output


# --- trusted ----------------------------------------------------------------------------


def _labels(result) -> list[str]:
    assert result.exit_code == 0, result.output
    df = pd.read_csv(io.StringIO(result.stdout))
    assert list(df["path"]) == ["imgs/a_black.png", "imgs/b_white.png"]
    np.testing.assert_allclose(df[["p_dim", "p_lit"]].sum(axis=1), 1, atol=1e-5)
    return list(df["label"])


@pytest.mark.parametrize("command", ["predict", "tta"])
def test_classifies_with_the_flag(bundles, images, command):
    result = _run([*_args(command, bundles), "--trust-code"])
    assert _labels(result) == ["dim", "lit"]


def test_classifies_with_the_env_var(bundles, images):
    result = _run(_args("predict", bundles), env={TRUST_ENV: "1"})
    assert _labels(result) == ["dim", "lit"]


def test_segments_with_the_flag(bundles, images):
    result = _run([*_args("segment", bundles), "--trust-code"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "masks"
    assert not np.asarray(Image.open("masks/a_black.png")).any()
    assert (np.asarray(Image.open("masks/b_white.png")) == 255).all()


# --- the library ------------------------------------------------------------------------


def test_load_bundle_trust_parameter(bundles, monkeypatch):
    with pytest.raises(UntrustedCodeError, match=r"contains code \(a Lambda layer 'brightness_"):
        load_bundle(bundles["classify"])
    with pytest.raises(UntrustedCodeError, match="only bundles you trust"):
        load_bundle(bundles["classify"], trust=False)
    trusted = load_bundle(bundles["classify"], trust=True)
    assert trusted.trust
    assert trusted.model.get_layer("brightness_logit") is not None
    # The variable decides only when the caller does not.
    monkeypatch.setenv(TRUST_ENV, "1")
    assert load_bundle(bundles["classify"]).trust
    with pytest.raises(UntrustedCodeError):
        load_bundle(bundles["classify"], trust=False)


@pytest.mark.filterwarnings("ignore:The object being serialized includes a `lambda`")
def test_code_layers_finds_lambdas_anywhere(tmp_path):
    import keras

    inputs = keras.Input((4,))
    inner_in = keras.Input((4,))
    inner = keras.Model(inner_in, keras.layers.Lambda(lambda t: t + 1, name="hidden")(inner_in))
    x = keras.layers.Lambda(lambda t: t * 2, name="top")(inner(inputs))
    keras.Model(inputs, x).save(tmp_path / "nested.keras")
    # A backbone's layers are found too, each once.
    assert code_layers(tmp_path / "nested.keras") == [
        "a Lambda layer 'hidden'",
        "a Lambda layer 'top'",
    ]

    plain = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    plain.save(tmp_path / "plain.keras")
    assert code_layers(tmp_path / "plain.keras") == []
    # A lambda loss is compile settings, which loading (uncompiled) never runs.
    plain.compile(loss=lambda y, p: keras.ops.mean((y - p) ** 2), optimizer="sgd")
    plain.save(tmp_path / "compiled.keras")
    with zipfile.ZipFile(tmp_path / "compiled.keras") as archive:
        assert "__lambda__" in archive.read("config.json").decode()  # it is in the file
    assert code_layers(tmp_path / "compiled.keras") == []
    (tmp_path / "broken.keras").write_bytes(b"not a zip")
    assert code_layers(tmp_path / "broken.keras") == []


# The keras.applications backbones are scanned in test_backbones' round trips, on the
# build those tests share (each costs 3-8 s on a 2-core CPU), with three classes; their
# head is mobilenetv2's (classifier_head), scanned here with two.
@pytest.mark.parametrize("name", [n for n in list_models() if n not in APPLICATIONS])
def test_imgkits_own_models_carry_no_code(name, tmp_path):
    # Every bundle imgkit trains must load without --trust-code.
    spec = get_spec(name)
    options = {"weights": "none"} if spec.takes_weights else {}
    create_model(name, 2, (32, 32), spec.channels, **options).save(tmp_path / "m.keras")
    assert code_layers(tmp_path / "m.keras") == []


def test_code_the_scan_misses_is_still_refused_in_words(bundles, monkeypatch):
    # Keras's safe mode is the last line: what it refuses gets the same message.
    monkeypatch.setattr("imgkit.bundle.code_layers", lambda path: [])
    bundle = load_bundle(bundles["classify"])
    with pytest.raises(UntrustedCodeError, match="contains code .* --trust-code"):
        _ = bundle.model
