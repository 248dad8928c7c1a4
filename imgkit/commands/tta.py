"""``imgkit tta``: classify images averaged over augmented views; predict's CSV out."""

from __future__ import annotations

import click

from imgkit.commands._common import (
    batch_size_option,
    output_option,
    ray_options,
    ray_settings,
    runtime_option,
    seed_option,
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


@click.command(name="tta")
@click.argument("run")
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "-n",
    "--views",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Views per image: the image, its mirror image, then seeded flips, shifts and "
    "zooms. 1 is plain predict.",
)
@output_option(help_text="CSV file to write (default: stdout).")
@split_option
@batch_size_option(32, help_text="Images per batch (one model call sees batch-size x n views).")
@invert_option
@seed_option
@calibration_option
@trust_code_option
@shard_option
@runtime_option
@ray_options
def command(
    run, inputs, views, output, split, batch_size, invert, seed, calibrated, trust_code, shard,
    runtime, ray_address, workers, gpus_per_worker,
):  # fmt: skip
    """Classify images with RUN, each averaged over -n augmented views (test-time augmentation).

    Inputs and the CSV are those of `imgkit predict` (path,label,confidence,
    p_<class>...). View 0 is the image itself, view 1 its mirror image, and the
    others seeded combinations of a flip, a shift and a zoom of up to 10%. The
    model's probabilities are averaged over the views and the bundle's temperature
    is applied to the average. The same --seed gives the same CSV, whatever the
    --batch-size. All views of a batch go through the model in one call, so -n 10
    costs much less than ten predict runs.

    \b
    Example:
        imgkit tta runs/dvc data/dvc-test -n 10 -o tta.csv
        imgkit eval preds.csv tta.csv --truth data/dvc
    """
    from imgkit.infer.inputs import parse_shard
    from imgkit.infer.runtime import open_bundle
    from imgkit.infer.tta import tta_inputs

    shard = parse_shard(shard)
    bundle = open_bundle(run, task="classification", trust=trust_code or None, runtime=runtime)
    use_calibration(bundle, calibrated)
    stdin = click.get_text_stream("stdin") if "-" in inputs else None
    ray = ray_settings(ray_address, workers, gpus_per_worker)

    def frames(on_reject):
        if ray is not None:
            from imgkit.infer.ray_batch import ray_predict

            return ray_predict(
                bundle,
                inputs,
                stdin,
                split,
                batch_size,
                invert,
                on_reject,
                ray,
                runtime=runtime,
                views=views,
                seed=seed,
                shard=shard,
            )
        return tta_inputs(
            bundle,
            inputs,
            stdin,
            split,
            views,
            seed,
            batch_size,
            invert,
            on_reject=on_reject,
            shard=shard,
        )

    write_predictions(
        bundle.classes,
        frames,
        output,
        header=shard is None or shard[0] == 1,
    )  # fmt: skip
