"""A finished classifier bundle as the start of a new run: its model, trained further.

``imgkit train DATA --weights RUN/model.keras`` (no ``--model``) starts from the
model in RUN, a classification or multi-label bundle imported or trained by imgkit:
:func:`bundle_beside` finds the bundle's imgkit.json, :func:`bundle_spec` gives the run
its input, pixels and defaults, and :func:`start_model` loads the model (refusing code
unless trusted, as :func:`imgkit.bundle.load_bundle` does). The bundle's last Dense
layer stays when DATA is of the bundle's task with the bundle's classes
(:func:`keeps_head`); otherwise a new one replaces it: softmax (or one sigmoid unit
for two classes) for a classification dataset, one sigmoid unit per label for a
multi-label one. Every layer keeps the ``trainable`` flag it was saved with (a fixed
preprocessing layer stays fixed).
"""

from __future__ import annotations

import os
from pathlib import Path

from imgkit.bundle import BUNDLE_META, MODEL_FILE, read_meta
from imgkit.errors import BadInputError
from imgkit.models import ModelSpec, Recipe, get_spec, list_models

# Defaults for a model that is not in the registry (an imported one): a trained model
# is fine-tuned, so the learning rate is a tenth of the registry's usual 1e-3.
BATCH_SIZE = 32
LR = 1e-4
# The bundles whose model trains further: those that end in a Dense layer over classes.
TASKS = ("classification", "multilabel")


def bundle_beside(weights) -> dict | None:
    """The imgkit.json of the classification or multi-label bundle whose model.keras
    ``weights`` is.

    None for anything else (no path, a plain weights file, a segmentation bundle).
    """
    if weights is None or str(weights).lower() in ("imagenet", "none"):
        return None
    path = Path(os.fspath(weights)).expanduser()
    if path.name != MODEL_FILE or not path.is_file() or not (path.parent / BUNDLE_META).is_file():
        return None
    meta = read_meta(path.parent)
    return meta if meta["task"] in TASKS else None


def keeps_head(meta: dict, classes: list[str], task: str) -> bool:
    """Whether a run on ``classes`` (a ``task`` dataset) keeps the bundle's last layer:
    the same task (softmax and per-label sigmoids answer different questions) and the
    same classes in the same order."""
    return meta["task"] == task and list(classes) == list(meta["classes"])


def bundle_spec(meta: dict, classes: list[str] | None = None, task: str | None = None) -> ModelSpec:
    """What the registry would say about the bundle's model, trained on ``classes``.

    The bundle's input, channels and pixels; its output when it keeps its head
    (:func:`keeps_head`; ``task`` None: the bundle's own), else "multilabel" for a
    multi-label ``task`` and the registry's output for the model (softmax for an
    imported one) for a classification one; the registry's batch size, learning rate,
    schedule and patience where it knows the model. No augmentation: a model trained
    with it carries its augmentation layers.
    """
    known = get_spec(meta["model"]) if meta["model"] in list_models() else None
    task = task or meta["task"]
    if classes is None or keeps_head(meta, classes, task):
        output = meta.get("output", "softmax")
    elif task == "multilabel":
        output = "multilabel"
    else:
        output = known.output if known is not None else "softmax"
    h, w = meta["input_size"]
    return ModelSpec(
        name=meta["model"],
        builder=start_model,
        task="classification",
        input_size=(int(h), int(w)),
        channels=int(meta["channels"]),
        description="a bundle's model",
        pixels=dict(meta["pixels"]),
        recipe=Recipe(
            batch_size=known.recipe.batch_size, lr=known.recipe.lr,
            schedule=known.recipe.schedule, patience=known.recipe.patience,
        ) if known else Recipe(batch_size=BATCH_SIZE, lr=LR),
        output=output,
    )  # fmt: skip


def start_model(source, classes: list[str], task: str = "classification"):
    """The model of ``source`` (a :class:`~imgkit.bundle.Bundle`) ready to train on
    ``classes`` of a ``task`` dataset ("classification" or "multilabel").

    Returns:
        (the model, whether its last Dense layer was replaced).

    Raises:
        BadInputError: the head must change and the model has no Dense layer on flat
            features to replace.
    """
    import keras

    model = source.model
    if keeps_head(source.meta, classes, task):
        return model, False
    features = _features(model)
    if features is None or len(features.output.shape) != 2:
        raise BadInputError(
            f"{source.model_path}: no last Dense layer on flat features to replace, so it "
            f"cannot learn the {'labels' if task == 'multilabel' else 'classes'} "
            f"{', '.join(classes)} (its own: {', '.join(source.classes)})"
        )
    if task == "multilabel":
        kind, units = "sigmoid", len(classes)  # one independent unit per label
    else:
        kind = bundle_spec(source.meta, classes, task).output_for(len(classes))
        units = 1 if kind == "sigmoid" else len(classes)
    out = keras.layers.Dense(units, activation=kind, dtype="float32", name="probs")
    return keras.Model(features.inputs, out(features.output), name=model.name), True


def _features(model):
    """``model`` up to its last Dense layer's input: the same layers, sharing weights.

    That layer may be inside a nested model (an imported model sits inside the wrapper
    that scales its pixels); everything after it (an added softmax) is left out.
    """
    import keras

    for layer in reversed(model.layers):
        if isinstance(layer, keras.layers.Dense):
            return keras.Model(model.inputs, layer.input)
        if isinstance(layer, keras.Model):
            inner = _features(layer)
            if inner is not None:
                # Operation.input: the tensor this graph feeds the nested model (a
                # model's own .input is its own Input).
                return keras.Model(model.inputs, inner(keras.Operation.input.fget(layer)))
    return None
