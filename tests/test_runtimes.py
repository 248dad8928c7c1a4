"""Reduced-precision exports (ONNX int8, OpenVINO fp32/bf16/int8), their runtimes, and bench.

The bundles are the hand-made ones of tiny_bundles (a brightness classifier and a
brightness segmenter); the check images are real photographs that scikit-image ships.
Every export is compared with Keras on them by ``imgkit export`` itself, and again here
through ``predict``/``segment`` with ``--runtime``.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import need_module
from PIL import Image
from tiny_bundles import save_classifier, save_segmenter

from imgkit.commands import cli

pytestmark = pytest.mark.tensorflow


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _meta(run: Path) -> dict:
    return json.loads((run / "imgkit.json").read_text(encoding="utf-8"))


def _listing(run: Path):
    return sorted(p.name for p in run.iterdir()), (run / "imgkit.json").read_bytes()


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Eight real photographs (scikit-image's), as JPEGs."""
    data = pytest.importorskip("skimage.data", reason="needs scikit-image (the dev extra)")
    folder = tmp_path_factory.mktemp("photos")
    names = ("astronaut", "camera", "chelsea", "coffee", "coins", "moon", "rocket", "page")
    for name in names:
        pixels = getattr(data, name)()
        Image.fromarray(pixels).convert("RGB").save(folder / f"{name}.jpg", quality=90)
    return folder


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    need_module("onnxruntime", "needs the export extra (onnxruntime)")
    need_module("tf2onnx", "needs the export extra (tf2onnx)")
    return save_classifier(tmp_path_factory.mktemp("bundles") / "classifier")


def _copy(bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundle, tmp_path / "run"))


def _needs_openvino(precision: str = "fp32"):
    need_module("openvino", "needs the openvino extra")
    if precision == "int8":
        need_module("nncf", "needs the openvino extra (nncf)")
    if precision == "bf16":
        from imgkit.infer.openvino_model import cpu_has_bf16

        if not cpu_has_bf16():
            pytest.skip("this CPU runs no bf16")


@pytest.mark.parametrize(
    ("options", "key", "precision"),
    [
        (("-f", "onnx", "--quantize", "int8"), "onnx-int8", "int8"),
        (("-f", "openvino", "--precision", "fp32"), "openvino", "fp32"),
        (("-f", "openvino", "--precision", "bf16"), "openvino", "bf16"),
        (("-f", "openvino", "--precision", "int8"), "openvino-int8", "int8"),
    ],
)
def test_each_runtime_matches_keras_on_real_photos(
    classifier, photos, tmp_path, options, key, precision
):
    if key.startswith("openvino"):
        _needs_openvino(precision)
    run = _copy(classifier, tmp_path)
    result = _run("export", run, *options, "--check", photos)
    assert result.exit_code == 0, result.output
    record = _meta(run)["exports"][key]
    assert record["precision"] == precision and record["images_per_s"] > 0
    assert record["parity"]["images"] == 8
    if precision == "fp32":
        assert record["parity"]["max_abs_diff"] <= 1e-4 and "accuracy" not in record
    else:
        accuracy = record["accuracy"]
        assert accuracy["metric"] == "accuracy" and accuracy["against"] == "Keras's labels"
        assert accuracy["change"] == pytest.approx(accuracy["export"] - accuracy["keras"])
        assert accuracy["change"] >= -0.005 and accuracy["max_drop"] == 0.5
        assert record["parity"]["labels_agreeing"] == 1.0
    frames = {}
    for runtime in ("keras", key):
        result = _run("predict", run, photos, "--runtime", runtime)
        assert result.exit_code == 0, result.output
        frames[runtime] = pd.read_csv(io.StringIO(result.stdout))
    assert list(frames[key]["label"]) == list(frames["keras"]["label"])
    # predict runs what export checked: no further from Keras than the check recorded.
    diff = np.abs(frames[key]["p_lit"] - frames["keras"]["p_lit"]).max()
    assert diff <= record["parity"]["max_abs_diff"] + 1e-5


def test_accuracy_drop_refuses_the_export_and_writes_nothing(
    classifier, photos, tmp_path, monkeypatch
):
    from imgkit.export import exporter

    real = exporter._runner

    def swapped(target, path):
        run = real(target, path)
        return (lambda x: run(x)[:, ::-1]) if target.reduced else run

    monkeypatch.setattr(exporter, "_runner", swapped)
    run = _copy(classifier, tmp_path)
    before = _listing(run)
    result = _run("export", run, "-f", "onnx", "--quantize", "int8", "--check", photos)
    assert result.exit_code == 3, result.output
    assert "onnx (int8) export loses 100.00 points of accuracy" in result.output
    assert "--max-drop 0.5" in result.output and "nothing was written" in result.output
    assert _listing(run) == before  # model.onnx passed, but it is all or nothing
    assert not [p for p in run.iterdir() if ".part" in p.name]


def test_segmenter_through_openvino_and_the_stale_file_rule(photos, tmp_path):
    _needs_openvino()
    run = save_segmenter(tmp_path / "seg")
    result = _run("export", run, "-f", "openvino", "--precision", "fp32", "--check", photos)
    assert result.exit_code == 0, result.output
    assert _meta(run)["exports"]["openvino"]["parity"]["compared"] == "mask probabilities"
    masks = {}
    for runtime in ("keras", "openvino"):
        out = tmp_path / runtime
        result = _run("segment", run, photos, "-o", out, "--runtime", runtime)
        assert result.exit_code == 0, result.output
        masks[runtime] = {p.name: np.asarray(Image.open(p)) for p in sorted(out.glob("*.png"))}
    assert len(masks["openvino"]) == 8
    for name, mask in masks["keras"].items():
        assert (mask != masks["openvino"][name]).mean() < 0.01
    # The IR changed after export: auto falls back to Keras, --runtime openvino refuses.
    from imgkit.bundle import load_bundle
    from imgkit.infer.runtime import use_runtime

    assert use_runtime(load_bundle(run), "auto") == "openvino"
    with open(run / "openvino" / "model.bin", "ab") as f:
        f.write(b"\0")
    assert use_runtime(load_bundle(run), "auto") == "keras"
    result = _run("segment", run, photos, "-o", tmp_path / "again", "--runtime", "openvino")
    assert result.exit_code == 1 and "export it again" in result.output


def test_auto_takes_the_fastest_recorded_export(classifier, photos, tmp_path):
    _needs_openvino()
    from imgkit.bundle import load_bundle
    from imgkit.infer.runtime import use_runtime

    run = _copy(classifier, tmp_path)
    result = _run("export", run, "-f", "onnx,openvino", "--precision", "fp32", "--check", photos)
    assert result.exit_code == 0, result.output
    for fast, slow in (("openvino", "onnx"), ("onnx", "openvino")):
        meta = _meta(run)
        meta["exports"][fast]["images_per_s"], meta["exports"][slow]["images_per_s"] = 900, 100
        (run / "imgkit.json").write_text(json.dumps(meta), encoding="utf-8")
        bundle = load_bundle(run)
        assert use_runtime(bundle, "auto") == fast
        assert type(bundle.model).__name__ == {"onnx": "OnnxModel"}.get(fast, "OpenVinoModel")
    # The faster one's check kept under 99% of Keras's labels: auto passes it over.
    meta["exports"]["onnx"]["parity"]["labels_agreeing"] = 0.985
    (run / "imgkit.json").write_text(json.dumps(meta), encoding="utf-8")
    assert use_runtime(load_bundle(run), "auto") == "openvino"
    meta["exports"]["openvino"]["parity"]["labels_agreeing"] = 0.989
    (run / "imgkit.json").write_text(json.dumps(meta), encoding="utf-8")
    assert use_runtime(load_bundle(run), "auto") == "keras"
    assert use_runtime(load_bundle(run), "onnx") == "onnx"


def test_missing_openvino_is_one_line(classifier, photos, tmp_path, monkeypatch):
    import importlib.util

    from imgkit.export import reduced

    real = importlib.util.find_spec
    monkeypatch.setattr(
        reduced.importlib.util, "find_spec", lambda n, *a: None if n == "openvino" else real(n, *a)
    )
    run = _copy(classifier, tmp_path)
    before = _listing(run)
    result = _run("export", run, "-f", "openvino", "--check", photos)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert 'needs the openvino extra (openvino not installed): pip install -e ".[openvino]"' in (
        result.output
    )
    assert _listing(run) == before
    result = _run("predict", run, photos, "--runtime", "openvino")
    assert result.exit_code == 1 and "no openvino in the bundle" in result.output


def test_stray_precision_is_refused(classifier, tmp_path):
    run = _copy(classifier, tmp_path)
    result = _run("export", run, "-f", "onnx", "--precision", "int8")
    assert result.exit_code == 1 and "--precision applies to --format openvino only" in (
        result.output
    )
    result = _run("export", run, "-f", "onnx", "--quantize", "float16")
    assert result.exit_code == 1 and "float16 applies to --format tflite only" in result.output


def test_bench_csv_has_a_row_per_runtime_and_batch(classifier, photos, tmp_path):
    from imgkit.export.bench import COLUMNS

    run = _copy(classifier, tmp_path)
    result = _run("export", run, "-f", "onnx", "--quantize", "int8", "--check", photos)
    assert result.exit_code == 0, result.output
    result = _run("bench", run, photos, "--batch-size", "4")
    assert result.exit_code == 0, result.output
    table = pd.read_csv(io.StringIO(result.stdout), keep_default_na=False)
    assert tuple(table.columns) == COLUMNS
    rows = list(zip(table["runtime"], table["precision"], table["batch"], strict=True))
    assert rows == [
        ("decode", "", 4),
        ("keras", "fp32", 1),
        ("keras", "fp32", 4),
        ("onnx", "fp32", 1),
        ("onnx", "fp32", 4),
        ("onnx-int8", "int8", 1),
        ("onnx-int8", "int8", 4),
    ]
    assert (table["images_per_s"].astype(float) > 0).all()
    by = table.set_index(["runtime", "batch"])
    assert float(by.loc[("keras", 4), "max_diff"]) == 0
    assert float(by.loc[("onnx", 4), "max_diff"]) <= 1e-4
    recorded = _meta(run)["exports"]["onnx-int8"]["accuracy"]["change"]
    assert float(by.loc[("onnx-int8", 4), "accuracy_change"]) == pytest.approx(
        100 * recorded, abs=1e-3
    )
    assert by.loc[("onnx", 4), "accuracy_change"] == ""
    assert "images/s" in result.stderr
