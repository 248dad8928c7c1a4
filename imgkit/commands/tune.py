"""``imgkit tune``: a grid of ``train`` runs ranked on a validation metric."""

from __future__ import annotations

import click

from imgkit.commands._common import batch_size_option, info, lock_output, output_option, seed_option
from imgkit.train.tune import METRICS


@click.command("tune")
@click.argument("data", type=click.Path(file_okay=False))
@output_option(required=True, help_text="Tuning folder: trial-NNN/ bundles, trials.csv, best/.")
@click.option("--model", required=True, help="Model name from the registry (every trial).")
@click.option(
    "--grid",
    "grid_items",
    multiple=True,
    required=True,
    metavar="KEY=V1,V2",
    help="A train setting and the values to try (repeat for more settings): lr, dropout, "
    "fine_tune_last, batch_size, epochs, class_weight, label_smoothing, augment, ...",
)
@click.option(
    "--metric",
    type=click.Choice(list(METRICS)),
    default="log_loss",
    show_default=True,
    help="Val metric the trials are ranked on. f1 and balanced are measured at each "
    "trial's decision threshold, chosen on val for that metric.",
)
@click.option("--trials", type=click.IntRange(min=1), default=None, help="At most N trials.")
@click.option(
    "--random",
    "random_",
    is_flag=True,
    help="With --trials: a random sample (--seed) of the grid, not its first N points.",
)
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Epochs per trial.")
@batch_size_option(help_text="Images per training step.  [default: the model's]")
@click.option("--weights", default=None, metavar="imagenet|none|PATH", help="As for train.")
@click.option(
    "--class-weight",
    type=click.Choice(["none", "balanced"]),
    default=None,
    help="As for train.",
)
@click.option("--threshold", default=None, help="As for train (fixed for every trial).")
@click.option(
    "--size", "image_size", type=click.IntRange(min=1), default=None, help="Input side N."
)
@seed_option
def command(
    data,
    output,
    model,
    grid_items,
    metric,
    trials,
    random_,
    epochs,
    batch_size,
    weights,
    class_weight,
    threshold,
    image_size,
    seed,
):
    """Train one bundle per point of a grid and keep the best on a val metric.

    Each trial is a full `imgkit train` run into TUNE/trial-NNN; TUNE/trials.csv
    lists every trial's settings and val/test metrics, best first, rewritten as each
    trial finishes; TUNE/best is a copy of the best bundle (replaced atomically).
    Running the same command again skips the trials already complete.

    KerasTuner is not used: it runs its own training loop and trial folders, so its
    trials would not be imgkit bundles (calibration, thresholds, resume), and these
    searches are small grids.

    \b
    Example:
        imgkit tune data/idc -o tune/idc --model vgg16 --weights none \\
            --grid lr=1e-3,1e-4 --grid dropout=0.3,0.5 --epochs 10
        imgkit tune data/idc -o tune/ft --model vgg16 --metric f1 \\
            --grid fine_tune_last=0,4 --grid lr=1e-4,1e-5 --trials 3 --random
    """
    from imgkit.train.tune import parse_grid, tune

    grid = parse_grid(list(grid_items))
    fixed = {
        "epochs": epochs,
        "batch_size": batch_size,
        "weights": weights,
        "class_weight": class_weight,
        "threshold": threshold,
        "input_size": (image_size, image_size) if image_size else None,
        "seed": seed,
    }
    fixed = {k: v for k, v in fixed.items() if v is not None and k not in grid}

    def report(row: dict) -> None:
        params = " ".join(f"{k}={row[k]}" for k in grid)
        info(f"{row['trial']}: {params}  val {metric} {row['score']:.4f}  ({row['status']})")

    lock_output(output)
    table = tune(
        data,
        output,
        model=model,
        grid=grid,
        metric=metric,
        trials=trials,
        random=random_,
        seed=seed,
        train_args=fixed,
        on_trial=report,
        on_info=info,
    )
    best = table.iloc[0]
    info(f"best: {best['trial']} (val {metric} {best['score']:.4f}), copied to {output}/best")
    click.echo(f"{output}/best")
