"""``imgkit tune``: a grid of ``train`` runs ranked on a validation metric."""

from __future__ import annotations

import click

from imgkit.commands._common import info, lock_output, output_option
from imgkit.commands._settings_options import settings_options, threshold_option
from imgkit.train.tune import METRICS


@click.command("tune")
@click.argument("data", type=click.Path(file_okay=False))
@output_option(required=True, help_text="Tuning folder: trial-NNN/ bundles, trials.csv, best/.")
@settings_options(
    "model", "epochs", "batch_size", "weights", "class_weight", "input_size", "seed",
    required=("model",),
)  # fmt: skip
@threshold_option
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
def command(
    data,
    output,
    model,
    grid_items,
    metric,
    trials,
    random_,
    threshold,
    **fixed,
):
    """Train one bundle per point of a grid and keep the best on a val metric.

    Each trial is a full `imgkit train` run into TUNE/trial-NNN, with train's options
    given here fixed for every trial; TUNE/trials.csv lists every trial's settings and
    val/test metrics, best first, rewritten as each trial finishes; TUNE/best is a copy
    of the best bundle (replaced atomically). Running the same command again skips the
    trials already complete.

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
    from imgkit.train.resolve import DEFAULTS
    from imgkit.train.tune import parse_grid, tune

    grid = parse_grid(list(grid_items))
    # The seed also draws the --random sample, so every trial is given it.
    seed = DEFAULTS["seed"] if fixed["seed"] is None else fixed["seed"]
    fixed = {**fixed, "threshold": threshold, "seed": seed}
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
