"""Help cannot drift: every model's resolved defaults are what ``train --help`` and
``train --list-models`` say, and each training option is declared once."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from imgkit.commands import cli
from imgkit.models import get_spec, list_models
from imgkit.train.resolve import CLASSIFICATION_ONLY, not_taken, resolve_settings
from imgkit.train.settings import RunSettings, flag, setting_names

WIDE = {"terminal_width": 10_000, "max_content_width": 10_000}


def _help_entries(argv: list[str]) -> dict[str, str]:
    """First flag -> that option's whole help entry, whitespace collapsed."""
    result = CliRunner().invoke(cli, argv, **WIDE)
    assert result.exit_code == 0, result.output
    entries: dict[str, str] = {}
    current = None
    for line in result.output.split("Options:", 1)[1].splitlines():
        m = re.match(r"  (--[\w-]+)", line)
        if m:
            current = m.group(1)
            entries[current] = line
        elif current is not None:
            entries[current] += " " + line.strip()
    return {k: " ".join(v.split()) for k, v in entries.items()}


def _said_defaults(entry: str) -> dict[str, str] | str | None:
    """What an entry's ``[default: ...]`` says: one value for every model, or
    {model or "the others": value}; None when it gives no default."""
    m = re.search(r"\[default: ([^\]]*)\]", entry)
    if not m:
        return None
    pieces = m.group(1).split("; ")
    if not pieces[0].startswith("the model's: "):
        return m.group(1)
    pieces[0] = pieces[0].removeprefix("the model's: ")
    said = {}
    for piece in pieces:
        value, _, names = piece.partition(" for ")
        for name in ["the others"] if names == "the others" else names.split(", "):
            said[name] = value if name not in said else f"twice: {said[name]}, {value}"
    return said


def _expected(name: str) -> dict[str, object]:
    """setting -> the value a run of ``name`` given only the model uses, for the
    settings the model takes (a builder option it leaves to the builder: the builder's)."""
    spec = get_spec(name)
    settings = resolve_settings({"model": name}, spec.task)
    refused = set(not_taken(spec)) | (
        set(CLASSIFICATION_ONLY) if spec.task == "segmentation" else set()
    )
    out = {}
    for key in setting_names():
        value = getattr(settings, key)
        if value is None and key in spec.options:
            value = spec.options[key]  # what create_model builds with
        if key != "model" and key not in refused and value is not None:
            out[key] = value
    return out


def _same(text: str, value) -> bool:
    if isinstance(value, bool):
        return text == ("on" if value else "off")
    if isinstance(value, tuple):
        return text == "x".join(map(str, value))
    if isinstance(value, (int, float)):
        try:
            return float(text) == float(value)
        except ValueError:
            return False
    return text == str(value)


@pytest.mark.parametrize("command", ["train", "tune"])
def test_help_states_every_models_resolved_defaults(command):
    entries = _help_entries([command, "--help"])
    expected = {name: _expected(name) for name in list_models()}
    checked, wrong = 0, []
    for key in setting_names():
        if key == "model" or flag(key) not in entries:
            continue
        said = _said_defaults(entries[flag(key)])
        takers = {n: e[key] for n, e in expected.items() if key in e}
        if said is None:
            wrong.append(f"{flag(key)} gives no default")
            continue
        for name, value in takers.items():
            shown = said if isinstance(said, str) else said.get(name, said.get("the others"))
            if shown is None or not _same(shown, value):
                wrong.append(f"{flag(key)}: help says {shown!r} for {name}, the run uses {value!r}")
            checked += 1
        if isinstance(said, dict):
            # A model named is one that takes the option; "the others" only when all do.
            if set(said) - {"the others"} - set(takers):
                wrong.append(f"{flag(key)} names models without the option: {said}")
            if "the others" in said and len(takers) < len(expected):
                wrong.append(f"{flag(key)}: 'the others' while some models lack the option")
    assert not wrong, "\n".join(wrong)
    assert checked > (100 if command == "train" else 30)


def test_list_models_states_every_models_input_and_batch():
    result = CliRunner().invoke(cli, ["train", "--list-models"])
    assert result.exit_code == 0, result.output
    rows = {line.split("\t")[0]: line.split("\t") for line in result.output.splitlines()}
    assert sorted(rows) == list_models()
    for name in list_models():
        spec = get_spec(name)
        settings = resolve_settings({"model": name}, spec.task)
        h, w = settings.input_size
        assert rows[name][1] == spec.task
        assert rows[name][2] == f"{h}x{w}x{settings.channels}", name
        assert rows[name][5] == f"batch {settings.batch_size}", name


def test_train_takes_every_setting_and_tune_the_same_options():
    train = _help_entries(["train", "--help"])
    tune = _help_entries(["tune", "--help"])
    assert {flag(k) for k in setting_names()} <= set(train)
    # tune's options are train's own, declared once: same flag, same help.
    shared = {f for f in tune if f in train and f not in ("--output", "--help", "--model")}
    assert {"--epochs", "--batch-size", "--size", "--seed", "--weights"} <= shared
    for option in shared:
        assert tune[option] == train[option], option


def test_size_takes_hxw_in_train_and_tune(tmp_path):
    for command in ("train", "tune"):
        args = [command, str(tmp_path / "none"), "-o", str(tmp_path / "o"), "--model",
                "small-cnn", "--size", "12x"]  # fmt: skip
        if command == "tune":
            args += ["--grid", "lr=1e-3"]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2 and "expected HxW or N" in result.output, result.output


def test_each_range_and_choice_is_the_librarys():
    # The library refuses what the option refuses, with the option's name.
    base = resolve_settings({"model": "small-cnn"})
    for change, message in (
        ({"epochs": 0}, "--epochs must be at least 1"),
        ({"lr": 0.0}, "--lr must be more than 0"),
        ({"label_smoothing": 1.0}, r"--label-smoothing must be in \[0, 1\)"),
        ({"resize": "squash"}, "--resize must be one of stretch, pad, crop"),
        ({"channels": 2}, "--channels must be one of 1, 3"),
    ):
        with pytest.raises(Exception, match=message):
            RunSettings(**{**base.to_dict(), **change})


def test_given_builder_options_win_over_the_recipe(tmp_path):
    weights = tmp_path / "w.h5"
    weights.write_bytes(b"")
    given = {"model": "mobilenetv2", "weights": str(weights), "recipe": "seed", "dropout": 0.1}
    settings = resolve_settings(given)
    assert settings.weights == str(weights.resolve()) and settings.dropout == 0.1
    assert (settings.fine_tune_last, settings.features_at) == (30, "out_relu")  # the seed's
    assert resolve_settings({**given, "fine_tune_last": 4}).fine_tune_last == 4
