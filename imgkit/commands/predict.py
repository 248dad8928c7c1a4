"""``imgkit predict``: classify images with a model bundle; CSV out."""

from __future__ import annotations

import click

from imgkit.commands._common import (
    batch_size_option,
    output_option,
    ray_options,
    ray_settings,
    runtime_option,
    shard_option,
    trust_code_option,
)
from imgkit.commands._predictions import (
    calibration_option,
    invert_option,
    split_option,
    use_calibration,
    write_predictions,
)


@click.command(name="predict")
@click.argument("run")
@click.argument("inputs", nargs=-1, required=True)
@output_option(help_text="CSV file to write (default: stdout).")
@split_option
@batch_size_option(64)
@invert_option
@calibration_option
@trust_code_option
@shard_option
@runtime_option
@ray_options
def command(
    run, inputs, output, split, batch_size, invert, calibrated, trust_code, shard, runtime,
    ray_address, workers, gpus_per_worker,
):  # fmt: skip
    """Classify images with the model bundle RUN; one CSV row per image.

    INPUTS are image files, folders (walked recursively, in sorted order), dataset
    folders (their --split), or - to read paths from stdin, one per line. Every
    image is converted to what the model expects (size, channels, resize mode,
    orientation) as recorded in RUN/imgkit.json.

    The CSV has the columns path,label,confidence,p_<class>... (classes in the
    bundle's order), streamed to stdout, or with -o written atomically to a file
    whose path is then printed. A short table goes to stderr. Unreadable files are
    reported on stderr and skipped; the exit status is 1 only if no image could be
    predicted.

    A bundle whose model contains code (a Lambda layer) is refused unless
    --trust-code is given: that code would run as the model loads.

    \b
    Example:
        imgkit predict runs/fashion photos/ -o preds.csv
        imgkit predict runs/fashion data/fashion --split test > test_preds.csv
        find shots -name '*.jpg' | imgkit predict runs/fashion - | head
        imgkit predict runs/fashion big/ --shard 2/8 -o preds.2.csv   # a job array
        imgkit predict runs/fashion big/ -o preds.csv --workers 8 --ray ray://head:10001
    """
    from imgkit.infer.inputs import parse_shard
    from imgkit.infer.predict import predict_inputs
    from imgkit.infer.runtime import open_bundle

    shard = parse_shard(shard)
    bundle = open_bundle(run, task="classification", trust=trust_code or None, runtime=runtime)
    use_calibration(bundle, calibrated)
    stdin = click.get_text_stream("stdin") if "-" in inputs else None
    ray = ray_settings(ray_address, workers, gpus_per_worker)

    def frames(on_reject):
        if ray is not None:
            from imgkit.infer.ray_batch import ray_predict

            return ray_predict(
                bundle, inputs, stdin, split, batch_size, invert, on_reject, ray,
                runtime=runtime, shard=shard,
            )  # fmt: skip
        return predict_inputs(
            bundle, inputs, stdin, split, batch_size, invert, on_reject=on_reject, shard=shard
        )

    write_predictions(
        bundle.classes,
        frames,
        output,
        header=shard is None or shard[0] == 1,
    )
