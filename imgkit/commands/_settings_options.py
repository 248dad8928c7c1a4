"""Click options generated from the training settings: each option declared once.

Every :class:`~imgkit.train.settings.RunSettings` field carries its flag, type, bounds,
choices and help (:class:`~imgkit.train.settings.Setting`); :func:`settings_options`
turns the fields a command takes into click options, and the help's defaults are each
registered model's, as :func:`imgkit.train.resolve.model_defaults` settles them (no
default is written out by hand, so none can drift from the code).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache

import click

from imgkit.train.settings import flag, setting_names, setting_of

THRESHOLD_HELP = (
    "Binary (sigmoid) models: the decision threshold on P(second class) that predict and "
    "tta use. f1 (= auto) or balanced: chosen on the val split to maximise F1 of the "
    "second class or balanced accuracy; P: a fixed value in (0, 1); none: 0.5.  "
    "[default: none]  Multi-label datasets: one threshold per label, auto (the default) "
    "or f1 maximising each label's F1 on val, f2 its F2, P one fixed value for all."
)


def settings_options(*names: str, required: tuple[str, ...] = ()) -> Callable:
    """A decorator adding the options of settings ``names`` (all user settings if none),
    in the order the settings are declared; ``required`` ones must be given."""
    chosen = [n for n in setting_names() if not names or n in names]

    def decorate(fn):
        for name in reversed(chosen):
            fn = _option(name, name in required)(fn)
        return fn

    return decorate


def threshold_option(fn):
    """``--threshold``: not a setting of the model's training but of its bundle."""
    from imgkit.train.thresholds import CHOICES

    return click.option(
        "--threshold", default=None, metavar="|".join(CHOICES) + "|P", help=THRESHOLD_HELP
    )(fn)


def _option(name: str, required: bool):
    s = setting_of(name)
    flags = list(s.flags or (flag(name),))
    kwargs = {"required": required, "metavar": s.metavar}
    # click 8.4 counts an explicit default=None as a value, so a required option with it
    # is never reported missing; an option left out is None without it anyway.
    if not required:
        kwargs["default"] = None
    if s.kind is bool:
        flags = [f"{flags[0]}/--no-{flags[0][2:]}"]
    elif s.choices:
        kwargs["type"] = click.Choice([str(c) for c in s.choices])
        kwargs["callback"] = _typed_choice(s.choices)
    elif s.kind == "size":
        kwargs["callback"] = parse_size
    elif s.kind == "layers":
        kwargs["callback"] = _parse_layers
    elif s.kind in (int, float) and (s.low is not None or s.high is not None):
        kind = click.IntRange if s.kind is int else click.FloatRange
        kwargs["type"] = kind(min=s.low, max=s.high, min_open=s.low_open, max_open=True)
    elif s.kind in (int, float):
        kwargs["type"] = s.kind
    text = s.help.format(listed=s.listed()) if s.listed else s.help
    shown = default_text(name) or s.unset
    kwargs["help"] = f"{text}  [default: {shown}]" if shown and not required else text
    return click.option(*flags, name, **kwargs)


def _typed_choice(choices: tuple):
    by_text = {str(c): c for c in choices}

    def callback(_ctx, _param, value):
        return None if value is None else by_text[value]

    return callback


# --- the help's defaults ------------------------------------------------------------------


@cache
def _defaults() -> dict[str, dict]:
    """model -> its defaults (:func:`imgkit.train.resolve.model_defaults`), every model."""
    from imgkit.models import list_models
    from imgkit.train.resolve import model_defaults

    return {name: model_defaults(name) for name in list_models()}


def shown(value) -> str:
    """A default as the help writes it: on/off, HxW, 1e-05, 0.3, a name."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return "x".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def default_text(name: str) -> str:
    """Setting ``name``'s default for the help: one value, or "the model's: V for a, b;
    W for c; X for the others" (models without the option are not named); "" if none."""
    per_model = {m: d.get(name) for m, d in _defaults().items()}
    per_model = {m: v for m, v in per_model.items() if v is not None}
    groups: dict[str, list[str]] = {}
    for model, value in per_model.items():
        groups.setdefault(shown(value), []).append(model)
    if len(groups) <= 1:
        return next(iter(groups), "")
    rest = None
    if len(per_model) == len(_defaults()):  # every model takes it: the most common is "the rest"
        rest = max(groups, key=lambda v: len(groups[v]))
    parts = [f"{v} for {', '.join(models)}" for v, models in groups.items() if v != rest]
    if rest is not None:
        parts.append(f"{rest} for the others")
    return "the model's: " + "; ".join(parts)


# --- parsing ------------------------------------------------------------------------------


def parse_size(_ctx, _param, value):
    """``--size``: ``HxW`` or ``N`` (NxN) -> (height, width)."""
    if value is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?", str(value))
    if not m:
        raise click.BadParameter(f"{value!r}: expected HxW or N (e.g. 28x28)")
    h = int(m.group(1))
    w = int(m.group(2) or h)
    if h < 1 or w < 1:
        raise click.BadParameter(f"{value!r}: sides must be positive")
    return (h, w)


def _parse_layers(_ctx, _param, value):
    """``--fine-tune-last``: a layer count, 0, -1 or all (= -1)."""
    if value is None:
        return None
    text = str(value).strip().lower()
    try:
        n = -1 if text == "all" else int(text)
    except ValueError:
        n = -2
    if n < -1:
        raise click.BadParameter(f"{value!r}: expected a layer count, 0, -1 or all")
    return n
