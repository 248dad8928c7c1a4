"""The command group as a whole: help for every command, exit codes, no TF on --help."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from imgkit.commands import COMMANDS, cli


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help_with_an_example(name):
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output


def test_group_help_lists_every_command():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    # The Commands section, not the examples above it (which name a few commands too):
    # one entry a command, each with its one-line summary (wrapped lines continue it).
    listing = result.output.split("\nCommands:\n", 1)[1]
    entries = dict(re.findall(r"^  (\S+)\s+(\S.*)$", listing, flags=re.M))
    assert sorted(entries) == sorted(COMMANDS)
    for name, summary in entries.items():
        assert COMMANDS[name][1].startswith(summary), (name, summary)


@pytest.mark.parametrize("argv", [["--help"], *[[name, "--help"] for name in sorted(COMMANDS)]])
def test_help_does_not_import_tensorflow(argv):
    code = (
        "import sys\n"
        "from imgkit.commands import main\n"
        f"rc = main({argv!r})\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'jax', 'torch') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "sys.exit(rc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_unknown_command_is_a_usage_error():
    result = CliRunner().invoke(cli, ["nosuchcommand"])
    assert result.exit_code == 2


def test_library_error_is_one_line_and_exit_1(tmp_path):
    result = CliRunner().invoke(
        cli,
        ["train", str(tmp_path / "missing"), "-o", str(tmp_path / "run"), "--model", "fashion-cnn"],
    )
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "missing" in result.output


@pytest.mark.parametrize("command", [["train", "data", "-o", "out"], ["predict", "RUN", "x.png"]])
def test_a_missing_keras_backend_is_one_line_naming_the_install(command, tmp_path):
    import importlib.util
    import os

    from imgkit.backend import BACKENDS

    absent = [m for m in BACKENDS if importlib.util.find_spec(m) is None]
    if not absent:
        pytest.skip("every Keras backend imgkit knows is installed")
    bundle = _brightness_bundle(tmp_path / "run") if "RUN" in command else None
    argv = [str(bundle) if a == "RUN" else a for a in command]
    # A fresh process: this one has Keras imported on its own backend already.
    env = {**os.environ, "KERAS_BACKEND": absent[0]}
    proc = subprocess.run(
        [sys.executable, "-m", "imgkit", *argv],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert f"KERAS_BACKEND={absent[0]}) and it is not installed: pip install" in line


def _brightness_bundle(folder):
    """A tiny classification bundle: P(lit) grows with the image's mean brightness."""
    import json

    import keras

    inputs = keras.Input((8, 8, 1))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    dense = keras.layers.Dense(2, activation="softmax")
    out = dense(x)
    dense.set_weights([np.array([[-10.0, 10.0]]), np.array([5.0, -5.0])])
    folder.mkdir(parents=True)
    keras.Model(inputs, out).save(folder / "model.keras")
    meta = {
        "task": "classification", "model": "brightness", "classes": ["dim", "lit"],
        "input_size": [8, 8], "channels": 1, "resize": "stretch",
        "pixels": {"scale": 1 / 255, "offset": 0.0, "inside_model": True},
        "polarity": None, "output": "softmax",
    }  # fmt: skip
    (folder / "imgkit.json").write_text(json.dumps(meta), encoding="utf-8")
    return folder


def _required_options():
    import importlib

    import click

    for name, (module, _) in sorted(COMMANDS.items()):
        command = importlib.import_module(module).command
        for param in command.params:
            if isinstance(param, click.Option) and param.required:
                yield name, command, param


@pytest.mark.parametrize(
    "name,command,option", list(_required_options()), ids=lambda v: getattr(v, "name", v)
)
def test_a_required_option_left_out_is_a_usage_error(name, command, option, tmp_path):
    """Every required option, left out, is click's one-line usage error (exit 2), not a
    traceback from the command receiving None (click 8.4 counts default=None as given)."""
    import click

    (tmp_path / "f.csv").write_text("path\n")
    argv = [name]
    for param in command.params:
        if isinstance(param, click.Argument) and param.required:
            takes_file = isinstance(param.type, click.Path) and not param.type.dir_okay
            argv.append(str(tmp_path / "f.csv") if takes_file else str(tmp_path))
        elif isinstance(param, click.Option) and param.required and param is not option:
            value = param.type.choices[0] if isinstance(param.type, click.Choice) else "1"
            argv += [param.opts[0], str(value)]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 2, result.output
    assert "Missing option" in result.output and option.opts[-1] in result.output
