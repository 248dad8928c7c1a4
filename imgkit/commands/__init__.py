"""The ``imgkit`` command group.

Each subcommand lives in its own module and is imported only when it runs, so
``imgkit --help`` lists every command without importing TensorFlow.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from imgkit import __version__

# name -> (module, one-line help). The help is repeated here so that listing the
# commands does not import any of them.
COMMANDS: dict[str, tuple[str, str]] = {
    "prep": (
        "imgkit.commands.prep",
        "Make a dataset folder from images, CSVs, archives or fashion-mnist.",
    ),
    "train": (
        "imgkit.commands.train",
        "Train a model on a dataset folder and write a model bundle.",
    ),
    "predict": ("imgkit.commands.predict", "Classify images with a model bundle; CSV out."),
    "tta": ("imgkit.commands.tta", "Classify images averaged over augmented views; CSV out."),
    "eval": (
        "imgkit.commands.eval",
        "Score predictions against the truth: metrics, confusion matrix.",
    ),
    "submit": ("imgkit.commands.submit", "Turn a predictions CSV into a Kaggle submission."),
    "compare": ("imgkit.commands.compare", "Put several runs side by side: curves and a table."),
    "segment": ("imgkit.commands.segment", "Segment images with a model bundle; mask PNGs out."),
    "tune": (
        "imgkit.commands.tune",
        "Train a grid of settings; rank on a val metric, keep the best.",
    ),
    "import": (
        "imgkit.commands.import_model",
        "Make a model bundle from a Keras model made elsewhere (.keras, .h5, SavedModel).",
    ),
    "export": (
        "imgkit.commands.export",
        "Export a bundle's model as ONNX, OpenVINO, SavedModel or TFLite, checked.",
    ),
    "bench": (
        "imgkit.commands.bench",
        "Time every runtime a bundle has on images: a table, and CSV out.",
    ),
    "info": ("imgkit.commands.info", "Describe a model bundle: JSON on stdout, a table on stderr."),
    "explain": (
        "imgkit.commands.explain",
        "Heatmaps of where a classifier found each image's class; overlay PNGs out.",
    ),
    "report": (
        "imgkit.commands.report",
        "One static HTML page about a bundle: curves, metrics, mistakes, calibration.",
    ),
    "audit": (
        "imgkit.commands.audit",
        "Find duplicates, leaks, outliers and wrong labels in a dataset.",
    ),
    "cv": (
        "imgkit.commands.cv",
        "Cross-validate: one model per fold, out-of-fold predictions, a fold ensemble.",
    ),
    "blend": (
        "imgkit.commands.blend",
        "Average predictions CSVs of the same images (weights fitted on OOF with --fit).",
    ),
}


# Commands that run a model: Keras is imported (quietly) before they start. predict,
# tta and segment import it themselves, only for --runtime keras (imgkit.infer.runtime),
# so a bundle run through ONNX Runtime never pays for TensorFlow.
NEEDS_KERAS = {"train", "tune", "export", "import", "bench", "cv"}


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module only when it is used."""

    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module = importlib.import_module(COMMANDS[name][0])
        return module.command

    def invoke(self, ctx):
        from imgkit.commands._common import translate_errors

        with translate_errors(ctx):
            return super().invoke(ctx)

    def resolve_command(self, ctx, args):
        name, command, rest = super().resolve_command(ctx, args)
        # --list-models reads the registry only: it stays fast, without TensorFlow.
        if name in NEEDS_KERAS and not {"-h", "--help", "--list-models"} & set(rest):
            from imgkit.backend import import_keras_quietly

            import_keras_quietly()
        return name, command, rest

    def format_commands(self, ctx, formatter):
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="imgkit")
@click.option("-v", "--verbose", is_flag=True, help="Show tracebacks and more detail on stderr.")
@click.pass_context
def cli(ctx, verbose):
    """Train and use image models from shell scripts.

    Each command reads and writes plain files (folders of images, CSVs, model bundles,
    masks) so they chain in pipelines. Data goes to stdout, logs to stderr.

    \b
    Example:
        imgkit prep fashion-mnist -o data/fashion
        imgkit train data/fashion -o runs/fashion --model fashion-cnn
        imgkit predict runs/fashion photos/ -o preds.csv
    """
    # TensorFlow's C++ start-up chatter (oneDNN, CPU features) is noise on a
    # command's stderr; real errors still come through as Python exceptions.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose
    if verbose:
        os.environ["IMGKIT_VERBOSE"] = "1"


def main(argv=None):
    """Console-script entry point: run the group, turning library errors into exit codes."""
    from imgkit.commands._common import run_cli

    return run_cli(cli, argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
