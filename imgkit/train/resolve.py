"""A new run's settings: the values given, over the model's recipe and builder defaults.

:func:`resolve_settings` settles every :class:`~imgkit.train.settings.RunSettings`
field of a new run: a given value wins; else the model's :class:`~imgkit.models.Recipe`
(the named one, with ``--recipe``), its builder's option defaults, or the defaults
below. It refuses options the model does not take. ``imgkit train --help`` shows each
model's defaults as this function settles them (:func:`model_defaults`).
"""

from __future__ import annotations

from imgkit.errors import BadInputError
from imgkit.models import get_spec, resolved_options
from imgkit.models.bundled import bundle_spec
from imgkit.train.settings import (
    RunSettings,
    builder_settings,
    flag,
    setting_names,
    setting_of,
    weights_arg,
)

# The defaults no model changes.
DEFAULTS = {
    "seed": 0,
    "resize": "stretch",
    "class_weight": "none",
    "mixed_precision": "auto",
    "calibrate": True,
    "recipe": "default",
}
DEFAULT_SEGMENTATION_LOSS = "bce+dice"
# Classification's settings, and the value each has in a segmentation run.
CLASSIFICATION_ONLY = {"label_smoothing": 0.0, "class_weight": "none", "calibrate": False}
# Recipe fields that are settings with the same name and meaning.
_FROM_RECIPE = ("epochs", "batch_size", "lr", "patience", "augment", "label_smoothing",
                "head_epochs", "schedule", "near_best")  # fmt: skip


def resolve_settings(given: dict, task: str = "classification") -> RunSettings:
    """The settings of a new run: ``given`` (None = not given) over the model's defaults.

    Raises:
        BadInputError: no or unknown model, a model for another task, an option the
            model does not take, or a value out of range.
    """
    unknown = set(given) - set(setting_names())
    if unknown:
        raise BadInputError(f"unknown training settings: {', '.join(sorted(unknown))}")
    g = {k: given.get(k) for k in setting_names()}
    source = _source_bundle(g)
    if not g["model"] and source is None:
        _refuse_other_bundle(g["weights"])
        raise BadInputError("no model given (--model NAME; see --list-models)")
    spec = get_spec(g["model"]) if source is None else bundle_spec(source)
    recipe = spec.recipe_named(g["recipe"])
    if spec.task != task:
        hint = "" if task == "classification" else " (segmentation models: unet-mobilenetv2)"
        raise BadInputError(f"model {spec.name!r} is for {spec.task}, not {task}{hint}")
    if source is None:
        _check_options_fit(spec, g)
    else:
        _check_bundle_fit(spec, g)
    values = {k: _typed(k, g[k]) for k in setting_names()}
    for key, default in DEFAULTS.items():
        values[key] = default if values[key] is None else values[key]
    for key in _FROM_RECIPE:
        values[key] = getattr(recipe, key) if values.get(key) is None else values[key]
    values.update(
        model=spec.name,
        input_size=values["input_size"] or spec.input_size,
        channels=values["channels"] or spec.channels,
        resize=g["resize"] or (source or {}).get("resize") or values["resize"],
        from_bundle=spec.name if source else None,
        weights=weights_arg(g["weights"]) if source else None,
    )
    if source is None:
        _builder_values(spec, recipe, g, values)
    if task == "segmentation":
        _segmentation_values(values, g)
    elif g["loss"] is not None:
        raise BadInputError("--loss is for segmentation models; classification uses cross-entropy")
    return RunSettings(**values)


def _typed(key: str, value):
    kind = setting_of(key).kind
    if value is None or kind not in (int, float, bool):
        return value
    return kind(value)


def _builder_values(spec, recipe, g: dict, values: dict) -> None:
    """Fill, in place, the builder options the model takes: given (``g``), the recipe's,
    or the builder's defaults. head_units stays as given (None: the builder's own)."""
    given = {k: _typed(k, g[k]) for k in builder_settings()}
    for key in ("fine_tune_last", "features_at"):
        if given[key] is None:
            given[key] = getattr(recipe, key)
    given["weights"] = weights_arg(given["weights"])
    options = resolved_options(spec.name, **given)
    for key in ("dropout", "encoder", "features_at", "weights", "fine_tune_last"):
        values[key] = options.get(key)
    if values["fine_tune_last"] is not None:
        values["fine_tune_last"] = int(values["fine_tune_last"])


def model_defaults(name: str) -> dict:
    """What a run of model ``name`` uses when given nothing but the model: setting ->
    value, None where the model takes no such option (a builder option left to the
    builder shows the builder's default). The model itself is given, not defaulted."""
    spec = get_spec(name)
    settings = resolve_settings({"model": name}, spec.task)
    out = {key: getattr(settings, key) for key in setting_names() if key != "model"}
    for key in builder_settings():
        if out[key] is None and key in spec.options:
            out[key] = spec.options[key]
    refused = [*not_taken(spec), *(CLASSIFICATION_ONLY if spec.task == "segmentation" else ())]
    return {**out, **dict.fromkeys(refused)}


def not_taken(spec) -> dict[str, str]:
    """The settings model ``spec`` does not take -> the message refusing one, in the order
    they are checked."""
    out = {}
    if not spec.takes_weights:
        for key in ("weights", "fine_tune_last", "head_epochs"):
            out[key] = (
                f"model {spec.name!r} is trained from scratch: it takes no {flag(key)} "
                "(pretrained models: mobilenetv2)"
            )
    for key, shown, hint in (
        ("dropout", "dropout", ""),
        ("head_units", "--head-units", ""),
        ("features_at", "--features-at", ""),
        ("encoder", "--encoder", " (U-Net models: unet-mobilenetv2)"),
    ):
        if key not in spec.options:
            out.setdefault(key, f"model {spec.name!r} has no {shown} option{hint}")
    return out


def _check_options_fit(spec, g: dict) -> None:
    """Options the model does not take are refused by name, before anything else."""
    for key, message in not_taken(spec).items():
        if g[key] is not None:
            raise BadInputError(message)
    if g["encoder"] is not None:
        from imgkit.models.unet import check_encoder

        check_encoder(g["encoder"])


def _source_bundle(g: dict) -> dict | None:
    """The imgkit.json of the bundle ``--weights`` names when the run trains its model
    further: no ``--model``, or the bundle's own (a pretrained model named keeps its
    own ``--weights``, like vgg16's second phase)."""
    from imgkit.models import get_spec, list_models
    from imgkit.models.bundled import bundle_beside

    source = bundle_beside(g["weights"])
    if source is None or g["model"] not in (None, source["model"]):
        return None
    if g["model"] in list_models() and get_spec(g["model"]).takes_weights:
        return None
    return source


def _refuse_other_bundle(weights) -> None:
    """A clear line for ``--weights`` naming a bundle whose model cannot train further
    (a segmentation one), rather than "no model given"."""
    from pathlib import Path

    from imgkit.bundle import BUNDLE_META, MODEL_FILE, read_meta

    path = Path(str(weights or "")).expanduser()
    if weights and path.name == MODEL_FILE and (path.parent / BUNDLE_META).is_file():
        task = read_meta(path.parent).get("task")
        raise BadInputError(
            f"--weights {weights}: a {task} bundle; only a classification or multi-label "
            "bundle's model trains further (give --model to train a new one)"
        )


def _check_bundle_fit(spec, g: dict) -> None:
    """A bundle's model is trained as it is: its input, and no options that rebuild it."""
    start = f"--weights {g['weights']}: the run trains that bundle's {spec.name} model further"
    for key in ("dropout", "head_units", "fine_tune_last", "loss", "encoder", "head_epochs"):
        if g[key] is not None:
            raise BadInputError(f"{start}, as it is; it takes no {flag(key)}")
    h, w = spec.input_size
    size = tuple(int(v) for v in g["input_size"]) if g["input_size"] is not None else None
    if size is not None and size != spec.input_size:
        raise BadInputError(
            f"{start}, which takes --size {h}x{w}, not {size[0]}x{size[1]} (leave --size out)"
        )
    if g["channels"] is not None and int(g["channels"]) != spec.channels:
        raise BadInputError(
            f"{start}, which takes --channels {spec.channels}, not {g['channels']} "
            "(leave --channels out)"
        )


def _segmentation_values(values: dict, g: dict) -> None:
    """Fill and check, in place, the settings that differ for segmentation."""
    values["loss"] = g["loss"] or DEFAULT_SEGMENTATION_LOSS
    if values["resize"] != "stretch":
        raise BadInputError(
            "segmentation resizes images and masks by stretching (--resize stretch); "
            "masks are written back at each image's own size"
        )
    # Given as what segmentation uses anyway (0, none, off), they pass.
    for key, value in CLASSIFICATION_ONLY.items():
        if g[key] is not None and g[key] != value:
            raise BadInputError(
                "--calibrate is for classification; masks are thresholded at 0.5"
                if key == "calibrate"
                else f"{flag(key)} is for classification, not segmentation"
            )
    values.update(CLASSIFICATION_ONLY)
    h, w = values["input_size"]
    if h % 32 or w % 32:
        raise BadInputError(
            f"--size {h}x{w}: segmentation inputs must be multiples of 32 (e.g. 128, 224, 256)"
        )
