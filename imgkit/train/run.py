"""A run's beginning and end, shared by every task: settings and folder in, bundle out.

:func:`start_run` loads the dataset, checks the output folder against ``--resume`` and
``--overwrite`` and settles the settings (new, or as saved when resuming);
:func:`write_bundle` writes the finished bundle, imgkit.json last.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from imgkit.bundle import (
    CHECKPOINT_DIR,
    CURVES_FILE,
    HISTORY_FILE,
    MODEL_FILE,
    Bundle,
    load_bundle,
    save_meta,
)
from imgkit.data.dataset import Dataset
from imgkit.data.folds import FoldView, fold_view
from imgkit.errors import BadDatasetError, BadInputError
from imgkit.fileio import atomic_path, write_csv
from imgkit.train.checkpoints import RunState, prepare_output
from imgkit.train.distribute import Placement
from imgkit.train.resolve import resolve_settings
from imgkit.train.settings import RunSettings, setting_names


@dataclass
class Run:
    """A run being started: where, on what, with which settings, from which checkpoint."""

    out: Path
    ds: Dataset
    settings: RunSettings
    state: RunState | None  # the checkpoint resumed, or None for a new run
    source: Bundle | None = None  # the bundle whose model the run trains further
    placement: Placement | None = None  # the devices it trains on

    def strategy_scope(self):
        """Where the model is built and fitted: its devices' strategy scope, if any."""
        if self.placement is None:
            return contextlib.nullcontext()
        return self.placement.scope()

    @property
    def spec(self):
        """The model's registry spec (for a bundle's model, what it says in its stead)."""
        from imgkit.models import get_spec
        from imgkit.models.bundled import bundle_spec

        if self.source is not None:
            return bundle_spec(self.source.meta, self.ds.classes, self.ds.task)
        return get_spec(self.settings.model)

    @property
    def dataset_state(self) -> dict:
        ds = self.ds
        return {"path": str(ds.root.resolve()), "hash": ds.hash, "classes": ds.classes}


def start_run(
    dataset_dir, output, settings, given: dict, *, resume: bool, overwrite: bool, trust=None
) -> Run:
    """Load the dataset, check the output folder, and settle the run's settings.

    A run that trains a bundle's model further opens that bundle here, refusing one
    whose model carries code unless ``trust`` (None: as ``IMGKIT_TRUST_CODE`` says).
    """
    out = Path(output)
    ds = Dataset.load(dataset_dir)
    _check_dataset(ds)
    if resume and overwrite:
        raise BadInputError("--resume and --overwrite contradict each other; pass one")
    if settings is not None:
        given = {**{k: getattr(settings, k) for k in setting_names()}, **given}
    unknown = set(given) - set(setting_names())
    if unknown:
        raise TypeError(f"train() got unknown settings: {', '.join(sorted(unknown))}")
    state = prepare_output(out, resume=resume, overwrite=overwrite)
    task = "segmentation" if ds.task == "segmentation" else "classification"
    if state is None:
        settings = resolve_settings(given, task)
        return _with_source(Run(out, fold_view(ds, settings.fold), settings, None), trust)
    settings = RunSettings.from_saved(state.args)
    settings.check_resume(given)
    ds = fold_view(ds, settings.fold)
    saved = state.dataset
    if saved.get("hash") != ds.hash or saved.get("classes") != ds.classes:
        raise BadInputError(
            f"--resume: {ds.root} is not the dataset the run in {out} was started on "
            f"(that was {saved.get('path')}, hash {saved.get('hash')}; this one has hash {ds.hash})"
        )
    return _with_source(Run(out, ds, settings, state), trust)


def _with_source(run: Run, trust) -> Run:
    from imgkit.models.bundled import TASKS

    if run.settings.from_bundle:
        run.source = load_bundle(Path(run.settings.weights).parent, TASKS, trust)
    return run


def run_meta(run: Run, fit, metrics: dict, monitor: str, mixed: bool) -> dict:
    """The imgkit.json keys every task shares: how the run went and on what data."""
    ds = run.ds
    splits = ds.splits()
    return {
        "train_args": run.settings.to_dict(),
        "dataset": {
            "path": str(ds.root.resolve()),
            "hash": ds.hash,
            "counts": {s: int((ds.manifest["split"] == s).sum()) for s in splits},
            **_fold_record(ds),
        },
        "metrics": metrics,
        "monitor": monitor,
        "epochs_run": len(fit.history),
        "best_epoch": fit.best_epoch,
        "early_stopped": bool(fit.stopped),
        "resumed": run.state is not None,
        "mixed_precision": mixed,
        **({"devices": run.placement.record()} if run.placement is not None else {}),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _fold_record(ds: Dataset) -> dict:
    """A fold's run: which fold of how many, and the whole dataset's hash."""
    if not isinstance(ds, FoldView):
        return {}
    return {"fold": ds.k, "folds": ds.folds, "base_hash": ds.base.hash}


def write_bundle(out: Path, fit, meta: dict, title: str) -> dict:
    """model.keras, history.csv, curves.png, then imgkit.json; drop the checkpoints."""
    from imgkit.train.curves import plot_history

    with atomic_path(out / MODEL_FILE) as tmp:
        fit.net.save(tmp)
    hist_df = pd.DataFrame(fit.history)
    write_csv(hist_df, out / HISTORY_FILE)
    plot_history(hist_df, out / CURVES_FILE, title=title)
    # imgkit.json last: its presence says the bundle is complete. The checkpoints only
    # served --resume, which a complete bundle refuses, so they go.
    saved = save_meta(out, meta)
    shutil.rmtree(out / CHECKPOINT_DIR, ignore_errors=True)
    return json.loads(saved.read_text(encoding="utf-8"))


def transfer_info(net, settings: RunSettings, features_mode: bool, head_first=None) -> dict:
    """What imgkit.json says about a pretrained model's start and what of it trained."""
    from imgkit.models.backbones import BACKBONE_LAYER, find_layer, imagenet_file_for

    backbone = find_layer(net, BACKBONE_LAYER)
    info = {"weights": settings.weights, "fine_tune_last": settings.fine_tune_last}
    if settings.weights == "imagenet":
        info["weights_file"] = str(
            imagenet_file_for(settings.model, settings.input_size, settings.builder_options())
        )
    if backbone is not None:
        info["backbone_layers"] = len(backbone.layers)
        # Layers with weights only: a weightless layer's flag changes nothing.
        info["trainable_backbone_layers"] = sum(
            1 for lay in backbone.layers if lay.trainable and lay.weights
        )
    info["features_cached"] = bool(features_mode)
    if head_first:
        info["head_first"] = head_first
    return info


def source_info(source: Bundle, classes: list[str], task: str) -> dict:
    """What imgkit.json says about the bundle a run on ``classes`` (a ``task`` dataset)
    started from: its model, its folder, and whether its last layer was kept."""
    from imgkit.models.bundled import keeps_head

    return {
        "model": source.meta["model"],
        "path": str(source.path.resolve()),
        "head": "kept" if keeps_head(source.meta, classes, task) else "replaced",
    }


def _check_dataset(ds: Dataset) -> None:
    if ds.task == "segmentation" and "mask" not in ds.manifest.columns:
        raise BadDatasetError(f"{ds.root}: a segmentation dataset without a mask column")
    if ds.task not in ("classification", "multilabel", "segmentation"):
        raise BadDatasetError(
            f"{ds.root}: a {ds.task} dataset; imgkit train takes classification, multilabel "
            "or segmentation"
        )
    if ds.task == "classification" and len(ds.classes) < 2:
        raise BadDatasetError(
            f"{ds.root}: {len(ds.classes)} class(es) {ds.classes}; classification needs at least 2"
        )
    if "train" not in ds.splits():
        raise BadDatasetError(
            f"{ds.root}: no train split (splits here: {', '.join(ds.splits()) or 'none'})"
        )
