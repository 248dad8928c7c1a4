"""The model registry: a name -> a builder, with the preprocessing it expects.

Each model is one decorated builder (timm-style)::

    @register_model("fashion-cnn", task="classification", input_size=(28, 28), channels=1,
                    description="...", pixels={"scale": 1 / 255, "offset": 0.0},
                    recipe=Recipe(batch_size=128, schedule="cosine", augment="flip"))
    def fashion_cnn(num_classes, input_size, channels, dropout=0.4): ...

A model's spec says what the model is (input, pixels, builder and its options); its
:class:`Recipe` says how it is trained unless told otherwise, apart from it, as timm
keeps a model's pretrained config apart from training hyper-parameters. A named recipe
(``--recipe seed``) is a ``dataclasses.replace()`` of the default one.

The builder returns an uncompiled ``keras.Model`` that takes raw 0-255 pixels: its
scaling is its first layer, so every consumer feeds uint8 arrays unchanged. Builders
import Keras inside themselves, so listing the registry does not import TensorFlow.

To add a model: write a builder in a module here, decorate it, and add the module to
``_BUILTIN_MODULES``. The registry tests pick it up on their own.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

from imgkit.data.images import CHANNELS
from imgkit.errors import BadInputError

TASKS = ("classification", "segmentation")

# Modules whose builders register themselves when imported.
_BUILTIN_MODULES = (
    "imgkit.models.cnn",
    "imgkit.models.mobilenet",
    "imgkit.models.vgg16",
    "imgkit.models.applications",
    "imgkit.models.unet",
)

OUTPUTS = ("softmax", "sigmoid", "auto")
AUGMENT_LEVELS = ("none", "flip", "shift", "light", "standard")
SCHEDULES = ("constant", "cosine")

_REGISTRY: dict[str, ModelSpec] = {}
_loaded = False


@dataclass(frozen=True)
class Recipe:
    """How a model is trained unless told otherwise: its training defaults.

    Attributes:
        batch_size: images per training step.
        lr: peak learning rate.
        schedule: "cosine" (decay to 0 over the whole run) or "constant".
        epochs: most epochs to train.
        patience: early-stopping patience (epochs; 0 never stops early).
        near_best: keep the weights of the latest epoch whose monitored loss is within
            this fraction of the lowest so far (0: the lowest's own). Under a schedule
            that decays to 0, the last epochs' losses differ by less than the val
            split's noise, and the later epoch has the better accuracy.
        label_smoothing: label smoothing of the loss.
        augment: augmentation level (one of ``AUGMENT_LEVELS``).
        head_epochs: pretrained models: most epochs of training the head alone on
            cached frozen features before fine-tuning (0: none).
        fine_tune_last: pretrained models: backbone layers that train; None: the
            builder's own default.
        features_at: pretrained models: the backbone layer the head reads; None: the
            builder's own default.
    """

    batch_size: int
    lr: float = 1e-3
    schedule: str = "constant"
    epochs: int = 15
    patience: int = 5
    near_best: float = 0.0
    label_smoothing: float = 0.0
    augment: str = "none"
    head_epochs: int = 0
    fine_tune_last: int | None = None
    features_at: str | None = None

    def __post_init__(self):
        checks = [
            (self.batch_size >= 1 and self.epochs >= 1, "batch size and epochs must be 1 or more"),
            (self.lr > 0, f"lr must be positive, got {self.lr}"),
            (self.schedule in SCHEDULES, f"unknown schedule {self.schedule!r}"),
            (self.patience >= 0 and self.head_epochs >= 0, "patience and head epochs must be >= 0"),
            (0 <= self.near_best < 1, f"near_best must be in [0, 1), got {self.near_best}"),
            (0 <= self.label_smoothing < 1, "label smoothing must be in [0, 1)"),
            (self.augment in AUGMENT_LEVELS, f"unknown augment level {self.augment!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"recipe: {message}")

    def replace(self, **changes) -> Recipe:
        """A named alternative: this recipe with ``changes`` (checked)."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about one model: what it is, and its :class:`Recipe`.

    Attributes:
        name: the registry name (``--model``).
        builder: ``fn(num_classes, input_size, channels, **options) -> keras.Model``.
        task: "classification" or "segmentation".
        input_size: default (height, width).
        channels: default channels (1 grayscale, 3 RGB).
        description: one line for ``--list-models``.
        pixels: how the model's first layers scale raw pixels: ``x * scale + offset``.
        recipe: how it is trained by default.
        output: "softmax" over the classes, "sigmoid" (one unit, P(classes[1]); two
            classes only), or "auto" (sigmoid for two classes, softmax for more).
        min_size: the smallest input side the model builds at.
        options: the builder's keyword options and their defaults (e.g. dropout;
            ``weights`` for models that start from pretrained weights).
        weights_file: for pretrained models, ``fn(input_size, **options) -> Path``:
            the ImageNet file ``--weights imagenet`` loads at that size (Keras's cache
            name); it may take builder options that choose the file (``encoder``).
        params: the parameter count (trainable or not) at the default input size and
            channels, for 2 classes; ``--list-models`` shows it without building the
            model, and a test checks it against the built one. 0: not recorded.
        pixels_for: for models whose scaling depends on a builder option (the U-Net's
            ``encoder``): ``fn(**options) -> pixels``; see :meth:`pixels_with`.
        recipes: named alternatives to ``recipe`` (``--recipe NAME``), each a
            ``recipe.replace(...)``; given options still win.
    """

    name: str
    builder: Callable
    task: str
    input_size: tuple[int, int]
    channels: int
    description: str
    pixels: dict
    recipe: Recipe
    output: str = "softmax"
    min_size: int = 1
    options: dict = field(default_factory=dict)
    weights_file: Callable | None = None
    params: int = 0
    pixels_for: Callable | None = None
    recipes: dict[str, Recipe] = field(default_factory=dict)

    def pixels_with(self, options: dict) -> dict:
        """How the model built with builder ``options`` scales pixels (imgkit.json's)."""
        if self.pixels_for is None:
            return dict(self.pixels)
        return dict(self.pixels_for(**{k: v for k, v in options.items() if v is not None}))

    @property
    def takes_weights(self) -> bool:
        """Whether the model starts from pretrained weights (``--weights``)."""
        return "weights" in self.options

    def output_for(self, num_classes: int) -> str:
        """The output this model has for ``num_classes`` classes: softmax or sigmoid."""
        if self.output == "auto":
            return "sigmoid" if num_classes == 2 else "softmax"
        return self.output

    def recipe_named(self, name: str | None) -> Recipe:
        """The recipe ``name`` (None or "default": :attr:`recipe`).

        Raises:
            BadInputError: the model has no such recipe; the message lists those it has.
        """
        if name in (None, "default"):
            return self.recipe
        if name not in self.recipes:
            names = ", ".join(["default", *sorted(self.recipes)])
            raise BadInputError(f"model {self.name!r} has no recipe {name!r} (it has: {names})")
        return self.recipes[name]


def register_model(
    name: str,
    *,
    task: str,
    input_size: tuple[int, int],
    channels: int,
    description: str,
    pixels: dict,
    recipe: Recipe,
    output: str = "softmax",
    min_size: int = 1,
    weights_file: Callable | None = None,
    params: int = 0,
    pixels_for: Callable | None = None,
    recipes: dict[str, Recipe] | None = None,
) -> Callable[[Callable], Callable]:
    """Decorator: register a model builder under ``name``.

    Args:
        name: the registry name users pass as ``--model``.
        task: "classification" or "segmentation".
        input_size: default (height, width).
        channels: default channels.
        description: one line shown by ``imgkit train --list-models``.
        pixels: ``{"scale": ..., "offset": ...}``, the scaling inside the model.
        recipe: how the model is trained by default.
        output: "softmax", "sigmoid" or "auto" (sigmoid for two classes).
        min_size: the smallest input side the model builds at.
        weights_file: pretrained models: ``fn(input_size, **options) -> Path`` of the
            ImageNet file.
        params: parameter count at the default size and channels, for 2 classes.
        pixels_for: ``fn(**options) -> pixels`` where a builder option changes them.
        recipes: ``{name: Recipe}``, the model's named alternatives to ``recipe``
            (``--recipe``); "default" is always ``recipe`` itself.

    Returns:
        The decorator, which returns the builder unchanged.
    """
    if task not in TASKS:
        raise ValueError(f"model {name!r}: unknown task {task!r}")
    if output not in OUTPUTS:
        raise ValueError(f"model {name!r}: unknown output {output!r}")
    if "default" in (recipes or {}):
        raise ValueError(f"model {name!r}: 'default' is the recipe itself, not a named one")

    def decorate(fn: Callable) -> Callable:
        if name in _REGISTRY and _REGISTRY[name].builder is not fn:
            raise ValueError(f"model {name!r} is registered twice")
        keywords = list(inspect.signature(fn).parameters.values())[3:]
        options = {p.name: p.default for p in keywords if p.default is not inspect.Parameter.empty}
        _REGISTRY[name] = ModelSpec(
            name=name,
            builder=fn,
            task=task,
            input_size=(int(input_size[0]), int(input_size[1])),
            channels=int(channels),
            description=description,
            # Extra keys (per-channel means, channel order) describe scaling that one
            # scale and offset cannot, like VGG16's; they are kept for imgkit.json.
            pixels={
                **pixels,
                "scale": float(pixels["scale"]),
                "offset": float(pixels.get("offset", 0.0)),
            },
            recipe=recipe,
            output=output,
            min_size=int(min_size),
            options=options,
            weights_file=weights_file,
            params=int(params),
            pixels_for=pixels_for,
            recipes=dict(recipes or {}),
        )
        return fn

    return decorate


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)


def list_models(task: str | None = None) -> list[str]:
    """Registered model names, sorted, optionally only those for ``task``."""
    _load_builtins()
    return sorted(n for n, s in _REGISTRY.items() if task is None or s.task == task)


def get_spec(name: str) -> ModelSpec:
    """The spec of a registered model; BadInputError listing the names if unknown."""
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        names = ", ".join(list_models()) or "none"
        raise BadInputError(f"unknown model {name!r} (available: {names})") from None


def create_model(
    name: str,
    num_classes: int,
    input_size: tuple[int, int] | None = None,
    channels: int | None = None,
    multilabel: bool = False,
    **options,
):
    """Build a registered model (uncompiled).

    Args:
        name: registry name.
        num_classes: number of classes (2 for a sigmoid model).
        input_size: (height, width); the model's default when None.
        channels: 1 or 3; the model's default when None.
        multilabel: one sigmoid unit per class (independent labels, several per image)
            in place of the model's last Dense layer (:func:`multilabel_output`).
        **options: builder options such as ``dropout``; None means the default.

    Returns:
        A ``keras.Model`` taking raw 0-255 pixels in NHWC.
    """
    spec = get_spec(name)
    given = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(given) - set(spec.options))
    if unknown:
        takes = ", ".join(sorted(spec.options)) or "no options"
        raise BadInputError(f"model {name!r} does not take {', '.join(unknown)} (it takes {takes})")
    if "dropout" in given and not 0 <= float(given["dropout"]) < 1:
        raise BadInputError(f"dropout must be in [0, 1), got {given['dropout']}")
    if multilabel:
        if num_classes < 1:
            raise BadInputError(f"model {name!r} needs at least 1 label, got {num_classes}")
        # Built for a width its builder takes; the last layer is replaced anyway.
        built = 2 if spec.output == "sigmoid" else max(num_classes, 3)
        model = create_model(name, built, input_size, channels, **options)
        return multilabel_output(model, num_classes, name)
    if spec.output == "sigmoid" and num_classes != 2:
        raise BadInputError(
            f"model {name!r} is binary (sigmoid) but the data has {num_classes} classes"
        )
    if num_classes < 2:
        raise BadInputError(f"model {name!r} needs at least 2 classes, got {num_classes}")
    size = tuple(input_size) if input_size is not None else spec.input_size
    ch = channels if channels is not None else spec.channels
    if ch not in CHANNELS:
        raise BadInputError(f"channels must be 1 or 3, got {ch}")
    if min(int(size[0]), int(size[1])) < spec.min_size:
        raise BadInputError(
            f"model {name!r} cannot be built at {size[0]}x{size[1]}x{ch}: "
            f"it needs at least {spec.min_size}x{spec.min_size}"
        )
    try:
        return spec.builder(num_classes, (int(size[0]), int(size[1])), int(ch), **given)
    except ValueError as e:
        # Keras raises ValueError when the input is too small for the layers.
        raise BadInputError(
            f"model {name!r} cannot be built at {size[0]}x{size[1]}x{ch}: {e}"
        ) from e


def multilabel_output(model, num_labels: int, name: str = ""):
    """``model`` with its last Dense layer replaced by ``num_labels`` sigmoid units.

    The new layer takes the old one's input, name and L2 penalty, so every registered
    classifier (the CNNs, and the backbones' head from
    :func:`imgkit.models.backbones.classifier_head`) becomes a multi-label one, and the
    cached-features path still finds a head after ``features``.
    """
    import keras

    last = model.layers[-1]
    if not isinstance(last, keras.layers.Dense):
        raise BadInputError(
            f"model {name or model.name!r} does not end in a Dense layer: it cannot be "
            "made multi-label"
        )
    # float32 even under mixed precision, as the classifiers' own outputs.
    dense = keras.layers.Dense(
        num_labels,
        activation="sigmoid",
        kernel_regularizer=last.kernel_regularizer,
        dtype="float32",
        name=last.name,
    )
    return keras.Model(model.inputs, dense(last.input), name=model.name)


def resolved_options(name: str, **options) -> dict:
    """The builder options a model is built with: the defaults, overridden by ``options``."""
    spec = get_spec(name)
    out = dict(spec.options)
    out.update({k: v for k, v in options.items() if v is not None and k in spec.options})
    return out


__all__ = [
    "ModelSpec",
    "Recipe",
    "create_model",
    "get_spec",
    "list_models",
    "register_model",
    "resolved_options",
]
