"""``train --tensorboard``: per-epoch scalars and the graph; a resumed run appends."""

from __future__ import annotations

from collections import defaultdict

import pandas as pd
import pytest
from click.testing import CliRunner
from tiny_data import SIZE, make_dataset

from imgkit.commands import cli
from imgkit.train import trainer as training
from imgkit.train.tensorboard import run_log_dir, tensorboard_callback, write_scalars

FAST = dict(model="small-cnn", epochs=3, batch_size=8, input_size=(SIZE, SIZE))


def read_events(folder):
    """{tag: [(step, value), ...]} over every event file in ``folder``; and the graphs."""
    import tensorflow as tf

    scalars, graphs = defaultdict(list), 0
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            graphs += bool(event.graph_def)
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "scalars":
                    number = float(tf.make_ndarray(value.tensor))
                    scalars[value.tag].append((event.step, number))
    return {tag: sorted(v) for tag, v in scalars.items()}, graphs


@pytest.mark.tensorflow  # tf.summary writes the events, tf.function traces the graph
def test_scalars_per_epoch_and_resume_appends(tmp_path):
    data = make_dataset(tmp_path / "squares", n_train=16, n_val=8, n_test=0).root
    run, tb = tmp_path / "run", tmp_path / "tb"
    log_dir = run_log_dir(tb, run)
    assert log_dir == tb / "run"

    def stop_after_two(report):
        if report["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        training.train(data, run, **FAST, callbacks_extra=[tensorboard_callback(log_dir)],
                       on_epoch=stop_after_two)  # fmt: skip
    train, graphs = read_events(log_dir / "train")
    val, _ = read_events(log_dir / "validation")
    assert graphs == 1
    for tag in ("epoch_loss", "epoch_accuracy", "epoch_learning_rate"):
        assert [step for step, _ in train[tag]] == [0, 1], tag
    assert [step for step, _ in val["epoch_loss"]] == [0, 1]

    # A run killed between logging epoch 3 and checkpointing it left a stray step 2.
    import tensorflow as tf

    stray = tf.summary.create_file_writer(str(log_dir / "train"))
    write_scalars(stray, {"loss": 99.0}, 2)
    stray.close()

    result = CliRunner().invoke(
        cli, ["train", str(data), "-o", str(run), "--resume", "--tensorboard", str(tb)]
    )
    assert result.exit_code == 0, result.output
    train, graphs = read_events(log_dir / "train")
    val, _ = read_events(log_dir / "validation")
    assert graphs == 1  # the graph is written once, by the run's first epoch
    for tag in ("epoch_loss", "epoch_accuracy", "epoch_learning_rate"):
        assert [step for step, _ in train[tag]] == [0, 1, 2], tag
    assert [step for step, _ in val["epoch_loss"]] == [0, 1, 2]
    history = pd.read_csv(run / "history.csv")
    assert [v for _, v in train["epoch_loss"]] == pytest.approx(list(history["loss"]), rel=1e-5)
    assert [v for _, v in train["epoch_learning_rate"]] == pytest.approx(list(history["lr"]))
    assert [v for _, v in val["epoch_loss"]] == pytest.approx(list(history["val_loss"]), rel=1e-5)


def test_another_keras_backend_is_one_line(tmp_path, monkeypatch):
    import keras

    from imgkit.errors import BadInputError

    monkeypatch.setattr(keras.config, "backend", lambda: "jax")
    with pytest.raises(BadInputError, match=r"TensorFlow backend \(this is jax"):
        tensorboard_callback(tmp_path / "tb")
    assert not (tmp_path / "tb").exists()
