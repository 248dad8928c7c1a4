"""Benchmark: how each int8 quantization choice changes a bundle's labels.

For a classification bundle with an ``imgkit export -f onnx`` model.onnx and its
dataset at hand, this quantizes model.onnx again in each VARIANT and reports, on the
val split (what ``imgkit export`` checks on), the change in val accuracy, the labels
that differ from Keras's, and the largest and mean probability differences. The
variants are imgkit's own writers (:mod:`imgkit.export.reduced`) with one choice
changed:

  ort-head, ort-nohead         ONNX Runtime int8 as export makes it (channels equalized,
                               biases corrected), the head kept float32 or not
  ort-head-noeq, ort-head-nobc ... without the equalization, or the bias correction
  ort-head-noeq-nobc           ... with neither (ONNX Runtime's quantization alone)
  ort-head-rr                  ... with 7-bit weights (``reduce_range``)
  ov-head, ov-nohead           NNCF int8 as export makes it (mixed preset: asymmetric
                               activations; full bias correction), head kept or not
  ov-head-fast, ov-nohead-fast ... with NNCF's fast bias correction (its default)
  ov-head-plain                ... with NNCF's default preset (symmetric activations)

Any ov variant may add: -cpu (target device CPU), -align (channel alignment),
-nooverflow (no 7-bit first layer), -histogram / -mean_quantile / -median_minmax /
-mean_minmax (how activation ranges are estimated).

Each variant calibrates on ``--calibration`` images spread over the train split, as
export does (``--calibrate-on val`` takes the first val images instead, as export did).

Usage: python benchmarks/bench_int8_variants.py RUN [VARIANT,...] [--calibration 100]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

VARIANTS = "ort-nohead,ort-head,ov-nohead-fast,ov-head-fast,ov-head-plain,ov-head"


def quantized_outputs(variant: str, source: Path, work: Path, calibration, arrays):
    """The variant's int8 copy of ``source``, written in ``work``, run on ``arrays``."""
    import nncf
    import onnxruntime.quantization as ortq

    from imgkit.export import ort_int8, reduced
    from imgkit.export.parity import outputs
    from imgkit.infer.openvino_model import OpenVinoModel

    parts = set(variant.split("-"))
    keep = "head" in parts
    real_nncf, real_ort = nncf.quantize, ortq.quantize_static
    real_steps = ort_int8.equalize_channels, ort_int8.correct_biases
    nncf_extra, ort_extra = {}, {}
    if "fast" in parts:
        nncf_extra["fast_bias_correction"] = True
    if "plain" in parts:
        nncf_extra["preset"] = nncf.QuantizationPreset.PERFORMANCE
    advanced = {}
    if "align" in parts:
        advanced["disable_channel_alignment"] = False
    if "nooverflow" in parts:
        advanced["overflow_fix"] = nncf.quantization.advanced_parameters.OverflowFix.DISABLE
    for name in parts & {"histogram", "mean_quantile", "median_minmax", "mean_minmax"}:
        from nncf.quantization.range_estimator import RangeEstimatorParametersSet

        advanced["activations_range_estimator_params"] = getattr(
            RangeEstimatorParametersSet, name.upper()
        )
    if advanced:
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters

        nncf_extra["advanced_parameters"] = AdvancedQuantizationParameters(**advanced)
    if "cpu" in parts:
        nncf_extra["target_device"] = nncf.TargetDevice.CPU
    if "rr" in parts:
        ort_extra["reduce_range"] = True
    # One choice changed in imgkit's own writers: the rest is what export does.
    nncf.quantize = lambda *a, **k: real_nncf(*a, **{**k, **nncf_extra})
    ortq.quantize_static = lambda *a, **k: real_ort(*a, **{**k, **ort_extra})
    if "noeq" in parts:
        ort_int8.equalize_channels = lambda *a: 0
    if "nobc" in parts:
        ort_int8.correct_biases = lambda *a: 0
    try:
        if variant.startswith("ort"):
            import onnxruntime as ort

            path = work / f"{variant}.onnx"
            reduced.write_onnx_int8(source, path, calibration, keep_head=keep)
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            name = session.get_inputs()[0].name
            return outputs(lambda x: session.run(None, {name: x})[0], arrays)
        folder = work / variant
        folder.mkdir()
        reduced.write_openvino(source, folder, "int8", calibration, keep_head=keep)
        return outputs(OpenVinoModel(folder, "int8", 2).predict_on_batch, arrays)
    finally:
        nncf.quantize, ortq.quantize_static = real_nncf, real_ort
        ort_int8.equalize_channels, ort_int8.correct_biases = real_steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("variants", nargs="?", default=VARIANTS)
    parser.add_argument("--calibration", type=int, default=100)
    parser.add_argument("--calibrate-on", choices=("train", "val"), default="train")
    args = parser.parse_args()

    from imgkit.bundle import load_bundle
    from imgkit.export.parity import _labels, calibration_images, check_images, outputs

    bundle = load_bundle(args.run)
    images = check_images(bundle)
    calibration = images.arrays[: args.calibration]
    if args.calibrate_on == "train":
        calibration = calibration_images(bundle, args.calibration)
    keras_out = outputs(bundle.model.predict_on_batch, images.arrays)
    keras_labels = _labels(bundle, keras_out)
    keras_acc = np.mean(keras_labels == images.truth)
    print(f"{images.source}: Keras val accuracy {100 * keras_acc:.2f}%")
    print("variant,accuracy_change_points,labels_differing,max_diff,mean_diff,seconds")
    with tempfile.TemporaryDirectory(prefix="imgkit-int8-") as work:
        for variant in args.variants.split(","):
            start = time.perf_counter()
            out = quantized_outputs(
                variant,
                args.run / "model.onnx",
                Path(work),
                calibration,
                images.arrays,
            )
            labels = _labels(bundle, out)
            change = 100 * (np.mean(labels == images.truth) - keras_acc)
            diff = np.abs(out - keras_out)
            print(
                f"{variant},{change:+.2f},{int((labels != keras_labels).sum())},"
                f"{diff.max():.3f},{diff.mean():.4f},{time.perf_counter() - start:.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
