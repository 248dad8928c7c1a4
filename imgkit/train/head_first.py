"""Transfer learning in two phases: the head on cached frozen features first.

A new head on a pretrained backbone starts random; fine-tuning the backbone's top
layers under it from the first step sends that random head's large gradients into
the pretrained layers, and a low learning rate that protects them leaves the head
slow to learn. Training the head alone first, on the backbone's pooled features
computed once (seconds, not minutes), then fine-tuning everything that trains at the
run's lower rate, starts the second phase from a head that already fits: the
recipe Keras's own transfer-learning guide describes, and the one that measured best
on the hard benchmark (README, Results).

The first phase keeps the epoch with the best val loss (train loss without a val
split) and writes no checkpoint: it takes seconds, so an interrupted run simply does
it again, and a resumed run, whose checkpoint already holds the trained head, skips it.
"""

from __future__ import annotations

import math

import numpy as np

# The head learns from scratch: a rate 10x the fine-tuning default, constant.
HEAD_LR = 1e-3
HEAD_PATIENCE = 5


def train_head_first(base, data, settings, compile_fn, say) -> dict:
    """Train ``base``'s head on its frozen backbone's cached features, in place.

    Args:
        base: the full model (no augmentation wrapper) with a ``features`` layer.
        data: the run's :class:`~imgkit.train.loop.FitData` (images in memory or mapped).
        settings: the run's settings (``head_epochs``, ``batch_size``).
        compile_fn: ``fn(model, steps, lr=..., schedule=..., epochs=...)`` compiling with
            the run's loss.
        say: one-line progress messages.

    Returns:
        ``{"epochs": run, "best_epoch": k, "best_<monitor>": value}`` for imgkit.json.
    """
    import keras

    from imgkit.models.backbones import head_model
    from imgkit.train.epochs import batch_bounds
    from imgkit.train.scoring import cached_features

    head = head_model(base)
    x, val = cached_features(base, data.x, data.val, settings.batch_size)
    steps = len(batch_bounds(len(x), settings.batch_size))
    compile_fn(head, steps, lr=HEAD_LR, schedule="constant", epochs=settings.head_epochs)
    monitor = "val_loss" if val is not None else "loss"
    stop = keras.callbacks.EarlyStopping(
        monitor=monitor, patience=HEAD_PATIENCE, restore_best_weights=True
    )
    history = head.fit(
        x, data.y, sample_weight=data.weights, batch_size=settings.batch_size,
        epochs=settings.head_epochs, validation_data=val, shuffle=True, verbose=0,
        callbacks=[stop],
    ).history  # fmt: skip
    values = [v if math.isfinite(v) else math.inf for v in history[monitor]]
    best = int(np.argmin(values))
    say(
        f"head trained first on cached backbone features: {len(values)} epochs, "
        f"best {monitor} {values[best]:.4f} at epoch {best + 1}; now fine-tuning"
    )
    return {"epochs": len(values), "best_epoch": best + 1, f"best_{monitor}": values[best]}
