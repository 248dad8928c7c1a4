"""A training run's settings: one typed, validated value, declared once.

:class:`RunSettings` is the whole answer to "how was this model trained": every field
is a setting the user may give (``--epochs``, ``--lr``...), filled with the model's
defaults where not given (:meth:`RunSettings.resolve`), checked when it is made, and
written to state.json (for ``--resume``) and imgkit.json (``train_args``). ``--resume``
rebuilds it from state.json (:meth:`RunSettings.from_saved`) and refuses a given value
that differs (:meth:`RunSettings.check_resume`); ``tune`` varies its fields.

Adding a training option is one field here (with its flag, its builder option if the
model takes it, and what runs saved before it existed did) and one click option.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from imgkit.errors import BadInputError
from imgkit.models import AUGMENT_LEVELS

DEFAULT_EPOCHS = 15
# Segmentation learns slower per epoch (few images, many pixels): on 8 real nuclei
# tiles at 128 px, held-out IoU was 0.80 after 40 epochs and 0.86 after 150 (cosine
# decay, batch 4, the square's symmetries as augmentation); early stopping ends it
# sooner on data that learns faster.
SEGMENTATION_EPOCHS = 150
DEFAULT_SEED = 0
DEFAULT_RESIZE = "stretch"
RESIZE_MODES = ("stretch", "pad", "crop")
CLASS_WEIGHTS = ("none", "balanced")
PRECISIONS = ("auto", "on", "off")
SEGMENTATION_LOSSES = ("bce", "dice", "bce+dice")
DEFAULT_SEGMENTATION_LOSS = "bce+dice"

_MISSING = object()


def _setting(legacy=_MISSING, builder: bool = False):
    """Field metadata: ``legacy`` is what a run saved before the field existed did;
    ``builder`` marks a keyword option of the model's builder."""
    return field(metadata={"legacy": legacy, "builder": builder})


@dataclass(frozen=True)
class RunSettings:
    """How one model is trained. None in an optional field means the model has no such option.

    ``imgkit.train.train`` takes these fields as keyword arguments, where None means
    "the default" (given below), or on resume "as the run was started".

    Attributes:
        model: registry name (see ``imgkit.models.list_models``); required unless
            resuming.
        epochs: most epochs to train (default 15).
        batch_size: images per step (default: the model's: 128 for fashion-cnn, 512 for small-cnn).
        lr: peak learning rate (default: the model's).
        seed: seeds weights, shuffling, dropout and augmentation (default 0).
        patience: stop after this many epochs without a better monitored loss; 0 never
            stops early (default: the model's, 5 for the CNNs, 7 for mobilenetv2). The
            best epoch's weights are kept either way.
        dropout: the model's dropout rate (None: the model has none); 0 removes it.
        resize: how images are fitted to the input size: stretch, pad or crop.
        input_size: (height, width) the images are resized to (default: the model's).
        channels: 1 (grayscale) or 3 (RGB) (default: the model's).
        weights: pretrained models: "imagenet" (default; Keras's cached file,
            downloaded when possible), "none", or a weights file's absolute path. Any
            model: a classification bundle's model.keras, with ``model`` None (or the
            bundle's model): that model is trained further (:mod:`imgkit.models.bundled`),
            at the bundle's input size, channels and pixels, with a new last layer when
            the dataset's classes are not the bundle's.
        fine_tune_last: pretrained models: backbone layers, from the end, that train
            (default 30); 0 freezes the backbone, -1 trains all of it. Its
            BatchNormalization layers never train.
        augment: one of imgkit.models.AUGMENT_LEVELS (default: the model's; light for
            mobilenetv2, none for the CNNs).
        label_smoothing: in [0, 1) (default: the model's; 0.1 for mobilenetv2).
        class_weight: none (default) or balanced (rarer classes weigh more).
        mixed_precision: auto (default: on only with a GPU), on or off.
        calibrate: fit a temperature on the val split (default True).
        loss: segmentation only: bce, dice or bce+dice (default).
        head_units: pretrained models: units of the new head's hidden Dense layer
            (default the model's, 256).
        features_at: pretrained models: the backbone layer pooled into the features
            the head reads (default the model's; the backbone ends there).
        head_epochs: pretrained models: most epochs the head trains alone on cached
            frozen features before the fine-tuning (0: none; default the model's), when
            backbone layers train (``fine_tune_last`` not 0); see
            :mod:`imgkit.train.head_first`.
        recipe: "default", or a model's named alternative to its defaults (mobilenetv2:
            "seed", seed 001's one-phase fine-tuning); options given still win.
        encoder: U-Net models: the ImageNet backbone the encoder is (default the
            model's, mobilenetv2; see ``imgkit.models.unet.ENCODER_TAPS``).
        from_bundle: the model of the bundle whose model.keras ``weights`` names, when the
            run trains that model further (not a user option; recorded).
        schedule: the model's learning-rate schedule (not a user option; recorded).
        near_best: the model's rule for the kept epoch: the latest whose monitored loss
            is within this fraction of the lowest (not a user option; recorded).
    """

    model: str = _setting()
    epochs: int = _setting()
    batch_size: int = _setting()
    lr: float = _setting()
    seed: int = _setting()
    patience: int = _setting()
    dropout: float | None = _setting(builder=True)
    resize: str = _setting()
    input_size: tuple[int, int] = _setting()
    channels: int = _setting()
    weights: str | None = _setting(legacy=None, builder=True)
    fine_tune_last: int | None = _setting(legacy=None, builder=True)
    augment: str = _setting(legacy="none")
    label_smoothing: float = _setting(legacy=0.0)
    class_weight: str = _setting(legacy="none")
    mixed_precision: str = _setting(legacy="off")
    calibrate: bool = _setting(legacy=False)
    loss: str | None = _setting(legacy=None)
    head_units: int | None = _setting(legacy=None, builder=True)
    features_at: str | None = _setting(legacy=None, builder=True)
    head_epochs: int = _setting(legacy=0)
    recipe: str = _setting(legacy="default")
    encoder: str | None = _setting(legacy=None, builder=True)
    from_bundle: str | None = _setting(legacy=None)
    schedule: str = "constant"
    near_best: float = 0.0

    def __post_init__(self):
        size = tuple(int(v) for v in self.input_size)
        object.__setattr__(self, "input_size", size)
        self._validate()

    # --- making one ---------------------------------------------------------------------

    @classmethod
    def resolve(cls, given: dict, task: str = "classification") -> RunSettings:
        """The settings of a new run: ``given`` (None = not given) over the model's defaults.

        Raises:
            BadInputError: no or unknown model, a model for another task, an option the
                model does not take, or a value out of range.
        """
        from imgkit.models import get_spec, recipe_settings, resolved_options
        from imgkit.models.bundled import bundle_spec

        unknown = set(given) - set(setting_names())
        if unknown:
            raise BadInputError(f"unknown training settings: {', '.join(sorted(unknown))}")
        g = {k: given.get(k) for k in setting_names()}
        source = _source_bundle(g)
        if not g["model"] and source is None:
            raise BadInputError("no model given (--model NAME; see --list-models)")
        spec = get_spec(g["model"]) if source is None else bundle_spec(source)
        preset = recipe_settings(spec, g["recipe"])
        g.update({k: v for k, v in preset.items() if k in g and g[k] is None})
        if spec.task != task:
            hint = "" if task == "classification" else " (segmentation models: unet-mobilenetv2)"
            raise BadInputError(f"model {spec.name!r} is for {spec.task}, not {task}{hint}")
        if source is None:
            _check_options_fit(spec, g)
        else:
            _check_bundle_fit(spec, g)

        epochs = SEGMENTATION_EPOCHS if task == "segmentation" else DEFAULT_EPOCHS
        options = {}
        if source is None:
            options = resolved_options(spec.name, dropout=g["dropout"], encoder=g["encoder"])

        def pick(key, default, kind):
            return default if g[key] is None else kind(g[key])

        values = {
            "model": spec.name,
            "epochs": pick("epochs", epochs, int),
            "batch_size": pick("batch_size", spec.batch_size, int),
            "lr": pick("lr", spec.lr, float),
            "seed": pick("seed", DEFAULT_SEED, int),
            "patience": pick("patience", spec.patience, int),
            "dropout": options.get("dropout"),
            "resize": g["resize"] or (source or {}).get("resize") or DEFAULT_RESIZE,
            "input_size": tuple(int(v) for v in (g["input_size"] or spec.input_size)),
            "channels": pick("channels", spec.channels, int),
            "weights": weights_arg(g["weights"]) if source else None,
            "fine_tune_last": None,
            "augment": g["augment"] or spec.augment,
            "label_smoothing": pick("label_smoothing", spec.label_smoothing, float),
            "class_weight": g["class_weight"] or "none",
            "mixed_precision": g["mixed_precision"] or "auto",
            "calibrate": pick("calibrate", True, bool),
            "loss": g["loss"],
            "head_units": pick("head_units", None, int),
            "features_at": None,
            "encoder": options.get("encoder"),
            "from_bundle": spec.name if source else None,
            "schedule": preset.get("schedule", spec.schedule),
            "near_best": spec.near_best,
            "recipe": g["recipe"] or "default",
            "head_epochs": pick("head_epochs", spec.head_epochs, int),
        }  # fmt: skip
        if spec.takes_weights:
            options = resolved_options(
                spec.name, weights=weights_arg(g["weights"]), fine_tune_last=g["fine_tune_last"],
                features_at=g["features_at"],
            )  # fmt: skip
            values["features_at"] = options.get("features_at")
            values["weights"] = options["weights"]
            values["fine_tune_last"] = int(options["fine_tune_last"])
        if task == "segmentation":
            _segmentation_values(values, g)
        elif g["loss"] is not None:
            raise BadInputError(
                "--loss is for segmentation models; classification uses cross-entropy"
            )
        return cls(**values)

    @classmethod
    def from_saved(cls, saved: dict) -> RunSettings:
        """The settings a checkpoint's state.json recorded (older runs: legacy defaults)."""
        values = {}
        for f in dataclasses.fields(cls):
            if f.name in saved:
                values[f.name] = saved[f.name]
            elif f.metadata.get("legacy", _MISSING) is not _MISSING:
                values[f.name] = f.metadata["legacy"]
        try:
            return cls(**values)
        except TypeError as e:
            raise BadInputError(f"the saved run's settings are incomplete ({e})") from e

    def check_resume(self, given: dict) -> None:
        """Refuse a given setting that differs from the run being resumed."""
        given = {**given, "weights": weights_arg(given.get("weights"))}
        for key in setting_names():
            value = given.get(key)
            if key == "input_size" and value is not None:
                value = tuple(int(v) for v in value)
            if value is not None and value != getattr(self, key):
                shown = getattr(self, key)
                if key == "input_size":
                    shown = list(shown)
                    value = list(value)
                raise BadInputError(
                    f"--resume continues the run as it was started: it used {flag(key)} "
                    f"{shown}, not {value} (use --overwrite to start again with new settings)"
                )

    # --- using one ----------------------------------------------------------------------

    def to_dict(self) -> dict:
        """The JSON form (state.json ``args``, imgkit.json ``train_args``)."""
        out = dataclasses.asdict(self)
        out["input_size"] = list(self.input_size)
        return out

    def builder_options(self) -> dict:
        """The model builder's keyword options this run sets."""
        from imgkit.models import get_spec

        spec = get_spec(self.model)
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.metadata.get("builder")
            and f.name in spec.options
            and getattr(self, f.name) is not None
        }

    def replace(self, **changes) -> RunSettings:
        """A copy with ``changes`` applied (and checked)."""
        return dataclasses.replace(self, **changes)

    def _validate(self) -> None:
        checks = [
            (len(self.input_size) == 2 and min(self.input_size) >= 1,
             f"input size must be (height, width), got {list(self.input_size)}"),
            (self.channels in (1, 3), f"--channels must be 1 or 3, got {self.channels}"),
            (self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}"),
            (self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}"),
            (self.lr > 0, f"--lr must be positive, got {self.lr}"),
            (self.patience >= 0, f"--patience must be 0 or more, got {self.patience}"),
            (self.head_epochs >= 0, f"--head-epochs must be 0 or more, got {self.head_epochs}"),
            (self.head_units is None or self.head_units >= 0,
             f"--head-units must be 0 (a linear head) or more, got {self.head_units}"),
            (self.resize in RESIZE_MODES,
             f"--resize must be one of {', '.join(RESIZE_MODES)}, got {self.resize!r}"),
            (0 <= self.label_smoothing < 1,
             f"--label-smoothing must be in [0, 1), got {self.label_smoothing}"),
            (self.fine_tune_last is None or self.fine_tune_last >= -1,
             "--fine-tune-last must be -1 (all), 0 (frozen) or a layer count, "
             f"got {self.fine_tune_last}"),
        ]  # fmt: skip
        for key, choices in (
            ("augment", AUGMENT_LEVELS),
            ("class_weight", CLASS_WEIGHTS),
            ("mixed_precision", PRECISIONS),
        ):
            value = getattr(self, key)
            checks.append(
                (
                    value in choices,
                    f"{flag(key)} must be one of {', '.join(choices)}, got {value!r}",
                )
            )
        for ok, message in checks:
            if not ok:
                raise BadInputError(message)
        self._validate_model()

    def _validate_model(self) -> None:
        from imgkit.models import get_spec

        if self.from_bundle:
            return  # the bundle's own input size
        spec = get_spec(self.model)
        if min(self.input_size) < spec.min_size:
            h, w = self.input_size
            raise BadInputError(
                f"model {spec.name!r} needs an input of at least {spec.min_size}x{spec.min_size}, "
                f"got --size {h}x{w}"
            )


# RunSettings fields that come from the model or the run, not from the user.
_RECORDED = ("schedule", "from_bundle", "near_best")


def setting_names() -> tuple[str, ...]:
    """The settings a user may give (and a resumed run must share): all but the recorded."""
    return tuple(f.name for f in dataclasses.fields(RunSettings) if f.name not in _RECORDED)


def flag(key: str) -> str:
    """The command-line flag of setting ``key``."""
    return "--size" if key == "input_size" else "--" + key.replace("_", "-")


def weights_arg(weights) -> str | None:
    """``--weights`` as stored: "imagenet", "none", or an existing file's absolute path."""
    if weights is None:
        return None
    text = os.fspath(weights)
    if text.lower() in ("imagenet", "none"):
        return text.lower()
    path = Path(text).expanduser()
    if not path.is_file():
        raise BadInputError(
            f"--weights {text}: no such file (give imagenet, none, or a weights file's path)"
        )
    return str(path.resolve())


def _check_options_fit(spec, g: dict) -> None:
    """Options the model does not take are refused by name, before anything else."""
    if not spec.takes_weights:
        for key in ("weights", "fine_tune_last", "head_epochs"):
            if g[key] is not None:
                raise BadInputError(
                    f"model {spec.name!r} is trained from scratch: it takes no {flag(key)} "
                    "(pretrained models: mobilenetv2)"
                )
    if g["dropout"] is not None and "dropout" not in spec.options:
        raise BadInputError(f"model {spec.name!r} has no dropout option")
    if g["head_units"] is not None and "head_units" not in spec.options:
        raise BadInputError(f"model {spec.name!r} has no --head-units option")
    if g["features_at"] is not None and "features_at" not in spec.options:
        raise BadInputError(f"model {spec.name!r} has no --features-at option")
    if g["encoder"] is not None:
        if "encoder" not in spec.options:
            raise BadInputError(
                f"model {spec.name!r} has no --encoder option (U-Net models: unet-mobilenetv2)"
            )
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
    if values["loss"] not in SEGMENTATION_LOSSES:
        raise BadInputError(
            f"--loss must be one of {', '.join(SEGMENTATION_LOSSES)}, got {values['loss']!r}"
        )
    if values["resize"] != "stretch":
        raise BadInputError(
            "segmentation resizes images and masks by stretching (--resize stretch); "
            "masks are written back at each image's own size"
        )
    for key in ("label_smoothing", "class_weight"):
        if g[key] not in (None, 0, 0.0, "none"):
            raise BadInputError(f"{flag(key)} is for classification, not segmentation")
    if g["calibrate"]:
        raise BadInputError("--calibrate is for classification; masks are thresholded at 0.5")
    values.update(label_smoothing=0.0, class_weight="none", calibrate=False)
    h, w = values["input_size"]
    if h % 32 or w % 32:
        raise BadInputError(
            f"--size {h}x{w}: segmentation inputs must be multiples of 32 (e.g. 128, 224, 256)"
        )
