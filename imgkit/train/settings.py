"""A training run's settings: one typed, validated value, each setting declared once.

:class:`RunSettings` is the whole answer to "how was this model trained": every field
is a setting the user may give (``--epochs``, ``--lr``...), filled with the model's
defaults where not given (:func:`imgkit.train.resolve.resolve_settings`), checked when
it is made, and written to state.json (for ``--resume``) and imgkit.json
(``train_args``). ``--resume`` rebuilds it from state.json (:meth:`RunSettings.from_saved`)
and refuses a given value that differs (:meth:`RunSettings.check_resume`); ``tune``
varies its fields.

Each field declares its option once, in its :class:`Setting` metadata: flag, type,
bounds, choices and help. The ``train`` and ``tune`` click options are generated from it
(``imgkit.commands._settings_options``), and the help's defaults from the registry.
Adding a training option is one field here (with its builder option if the model takes
it, and what runs saved before it existed did) and its default in the resolution.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from imgkit.data.images import CHANNELS, RESIZE_MODES
from imgkit.errors import BadInputError
from imgkit.models import AUGMENT_LEVELS, get_spec, list_models
from imgkit.train.recipe import CLASS_WEIGHTS, PRECISIONS

SEGMENTATION_LOSSES = ("bce", "dice", "bce+dice")

_MISSING = object()


@dataclass(frozen=True)
class Setting:
    """A :class:`RunSettings` field's command-line face and history, kept with the field.

    Attributes:
        help: the option's help (its default is added from the registry); "" for a
            recorded field, which is no option.
        kind: the value's type: ``int``, ``float``, ``str``, ``bool``, or "size"
            (``HxW`` or ``N``) or "layers" (a count, or ``all`` for -1).
        choices: the values it may take, when they are a fixed list.
        low: the least value (``low_open``: excluded); high: the bound above it,
            excluded.
        flags: the command-line flags, the main one first (default ``--the-name``).
        metavar: how the help shows the value.
        listed: ``fn() -> str`` filling ``{listed}`` in the help (names the registry
            knows, which the library checks itself).
        legacy: what a run saved before the field existed did.
        builder: a keyword option of the model's builder.
        unset: the help's default where no model sets one: what leaving it out does.
    """

    help: str = ""
    kind: object = str
    choices: tuple = ()
    low: float | None = None
    low_open: bool = False
    high: float | None = None
    flags: tuple[str, ...] = ()
    metavar: str | None = None
    listed: Callable[[], str] | None = None
    legacy: object = _MISSING
    builder: bool = False
    unset: str = ""

    def check(self, name: str, value) -> str | None:
        """What is wrong with ``value`` for setting ``name``, or None."""
        if value is None:
            return None
        shown = flag(name)
        if self.choices and value not in self.choices:
            names = ", ".join(str(c) for c in self.choices)
            return f"{shown} must be one of {names}, got {value!r}"
        low_ok = self.low is None or (value > self.low if self.low_open else value >= self.low)
        if not low_ok or (self.high is not None and value >= self.high):
            return f"{shown} must be {self.bounds()}, got {value}"
        return None

    def bounds(self) -> str:
        """The allowed range in words: "at least 1", "more than 0", "in [0, 1)"."""
        if self.high is not None:
            return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g})"
        return f"{'more than' if self.low_open else 'at least'} {self.low:g}"


def _setting(help="", **meta) -> dataclasses.Field:
    return field(metadata={"setting": Setting(help=help, **meta)})


def _encoders() -> str:
    from imgkit.models.unet import ENCODER_TAPS

    return ", ".join(ENCODER_TAPS)


def _recipes() -> str:
    named = {n: sorted(get_spec(n).recipes) for n in list_models()}
    return "; ".join(f"{n}: {', '.join(r)}" for n, r in named.items() if r)


@dataclass(frozen=True)
class RunSettings:
    """How one model is trained. None in an optional field means the model has no such option.

    ``imgkit.train.train`` takes these fields as keyword arguments, where None means
    "the default" (the model's: ``imgkit train --help`` lists them), or on resume "as
    the run was started". Each field's :class:`Setting` says what it means.
    """

    model: str = _setting("Model name from the registry (see --list-models).", metavar="NAME")
    epochs: int = _setting("Most epochs to train.", kind=int, low=1)
    batch_size: int = _setting("Images per training step.", kind=int, low=1)
    lr: float = _setting("Peak learning rate.", kind=float, low=0, low_open=True)
    seed: int = _setting("Seeds the weights, the shuffling, dropout and augmentation.", kind=int)
    patience: int = _setting(
        "Stop after this many epochs without a better val loss (train loss without a val "
        "split); 0 never stops early. The best epoch is kept.",
        kind=int,
        low=0,
    )
    dropout: float | None = _setting(
        "Dropout rate; 0 removes dropout. fashion-cnn: the last layer's rate, the earlier "
        "one is 0.75 of it.",
        kind=float,
        low=0,
        high=1,
        builder=True,
    )
    resize: str = _setting("How images are fitted to the model's input size.", choices=RESIZE_MODES)
    input_size: tuple[int, int] = _setting(
        "Input size images are resized to; N means NxN.",
        kind="size",
        flags=("--size", "--image-size"),
        metavar="HxW",
    )
    channels: int = _setting("1 grayscale, 3 RGB.", kind=int, choices=CHANNELS)
    weights: str | None = _setting(
        "Pretrained models: start from ImageNet weights (Keras's cached file; downloaded "
        "if possible), none (random), or a weights file; vgg16 also takes an earlier "
        "vgg16 bundle's model.keras (a second, fine-tuning phase).  Any model: "
        "RUN/model.keras of a classification or multi-label bundle (imported or trained), "
        "without --model, trains that model further at its input size, channels and "
        "pixels; its last Dense layer is replaced when DATA's classes, or its kind "
        "(single- or multi-label), are not the bundle's.",
        metavar="imagenet|none|PATH",
        legacy=None,
        builder=True,
    )
    fine_tune_last: int | None = _setting(
        "Pretrained models: how many of the backbone's last layers train; 0 freezes it "
        "(then the head trains on features computed once), all (or -1) trains it all. "
        "Its BatchNorm layers never train.",
        kind="layers",
        low=-1,
        metavar="N|all",
        legacy=None,
        builder=True,
    )
    augment: str = _setting(
        "Training-time augmentation (flip: horizontal flips; shift: flips and whole-pixel "
        "shifts; light adds rotation; standard adds brightness and zoom; segmentation: "
        "flip, shift and light mirror image and mask, standard turns them by any of the "
        "square's eight symmetries).",
        choices=AUGMENT_LEVELS,
        legacy="none",
    )
    label_smoothing: float = _setting(
        "Label smoothing of the loss.", kind=float, low=0, high=1, legacy=0.0
    )
    class_weight: str = _setting(
        "balanced: weigh each class's images by n / (classes x class count).",
        choices=CLASS_WEIGHTS,
        legacy="none",
    )
    mixed_precision: str = _setting(
        "float16 compute (float32 weights and output); auto: on only with a GPU.",
        choices=PRECISIONS,
        legacy="off",
    )
    calibrate: bool = _setting(
        "Fit a temperature on the val split so probabilities (and log loss) are honest; "
        "predict applies it. Classification only.",
        kind=bool,
        legacy=False,
    )
    loss: str | None = _setting(
        "Segmentation models: binary cross-entropy, Dice, or their sum (on multi-class "
        "masks: categorical cross-entropy, the mean of each class's Dice, or their sum).",
        choices=SEGMENTATION_LOSSES,
        legacy=None,
    )
    head_units: int | None = _setting(
        "Pretrained models: units of the new head's hidden Dense layer; 0 makes the head linear.",
        kind=int,
        low=0,
        legacy=None,
        builder=True,
    )
    features_at: str | None = _setting(
        "Pretrained models: the backbone layer pooled into the features the head reads; "
        "the backbone ends there (mobilenetv2: e.g. block_13_expand_relu, out_relu).",
        metavar="LAYER",
        legacy=None,
        builder=True,
    )
    head_epochs: int = _setting(
        "Pretrained models: most epochs the new head trains alone on cached frozen "
        "features (early stopping on val loss) before the fine-tuning; 0 skips that "
        "phase.",
        kind=int,
        low=0,
        legacy=0,
    )
    recipe: str = _setting(
        "A model's named alternative to its defaults ({listed}); options given still win.",
        metavar="NAME",
        listed=_recipes,
        legacy="default",
    )
    encoder: str | None = _setting(
        "U-Net models: the ImageNet encoder ({listed}); --weights PATH is then that "
        "network's no-top file.",
        metavar="NAME",
        listed=_encoders,
        legacy=None,
        builder=True,
    )
    fold: int | None = _setting(
        "Cross-validation: train on the other folds of a dataset made with `prep --folds` "
        "and validate (early stopping, calibration, threshold) on fold K; one fold's run "
        "is an ordinary bundle, so K such runs can go in parallel (a job array).",
        kind=int,
        low=1,
        metavar="K",
        legacy=None,
        unset="none: every fold trains, no val split",
    )
    # Recorded, not given: what the run's model and start decided.
    from_bundle: str | None = _setting(legacy=None)  # the bundle's model trained further
    schedule: str = _setting(legacy="constant")  # the model's learning-rate schedule
    near_best: float = _setting(kind=float, legacy=0.0)  # the model's rule for the kept epoch

    def __post_init__(self):
        size = tuple(int(v) for v in self.input_size)
        object.__setattr__(self, "input_size", size)
        self._validate()

    # --- making one ---------------------------------------------------------------------

    @classmethod
    def from_saved(cls, saved: dict) -> RunSettings:
        """The settings a checkpoint's state.json recorded (older runs: legacy defaults)."""
        values = {}
        for f in dataclasses.fields(cls):
            if f.name in saved:
                values[f.name] = saved[f.name]
            elif setting_of(f.name).legacy is not _MISSING:
                values[f.name] = setting_of(f.name).legacy
        try:
            return cls(**values)
        except TypeError as e:
            raise BadInputError(f"the saved run's settings are incomplete ({e})") from e

    def check_resume(
        self, given: dict, lead: str = "--resume continues the run as it was started"
    ) -> None:
        """Refuse a given setting that differs from the run being resumed (``lead``
        starts the message)."""
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
                    f"{lead}: it used {flag(key)} "
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
        spec = get_spec(self.model)
        return {
            name: getattr(self, name)
            for name in builder_settings()
            if name in spec.options and getattr(self, name) is not None
        }

    def replace(self, **changes) -> RunSettings:
        """A copy with ``changes`` applied (and checked)."""
        return dataclasses.replace(self, **changes)

    def _validate(self) -> None:
        if len(self.input_size) != 2 or min(self.input_size) < 1:
            raise BadInputError(f"input size must be (height, width), got {list(self.input_size)}")
        for f in dataclasses.fields(self):
            problem = setting_of(f.name).check(f.name, getattr(self, f.name))
            if problem:
                raise BadInputError(problem)
        if self.from_bundle:
            return  # the bundle's own input size
        spec = get_spec(self.model)
        if min(self.input_size) < spec.min_size:
            h, w = self.input_size
            raise BadInputError(
                f"model {spec.name!r} needs an input of at least {spec.min_size}x{spec.min_size}, "
                f"got --size {h}x{w}"
            )


def setting_of(name: str) -> Setting:
    """The :class:`Setting` declared with field ``name``."""
    return _SETTINGS[name]


_SETTINGS = {f.name: f.metadata["setting"] for f in dataclasses.fields(RunSettings)}


def setting_names() -> tuple[str, ...]:
    """The settings a user may give (and a resumed run must share): all but the recorded."""
    return tuple(name for name, s in _SETTINGS.items() if s.help)


def builder_settings() -> tuple[str, ...]:
    """The settings that are keyword options of a model's builder."""
    return tuple(name for name, s in _SETTINGS.items() if s.builder)


def flag(key: str) -> str:
    """The command-line flag of setting ``key``."""
    return (setting_of(key).flags or ("--" + key.replace("_", "-"),))[0]


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
