"""The input plan: one ordered stream of items and rejects, one default split, one shard
rule, one "nothing read" check, for predict, tta and segment alike."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from tiny_bundles import save_classifier, save_segmenter

from imgkit.commands import cli
from imgkit.data.dataset import Dataset
from imgkit.data.dataset_write import write_dataset
from imgkit.data.records import Record, Reject
from imgkit.errors import BadDatasetError, BadInputError
from imgkit.infer.inputs import Tally
from imgkit.infer.plan import Item, default_split, plan_inputs


def _png(path, value=100):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.full((6, 6), value, dtype=np.uint8)
    pixels[:, :3] = 0  # a mask needs both values
    Image.fromarray(pixels).save(path)
    return path


def _dataset(folder, splits, masks=False):
    """A dataset with one image per split named; with ``masks``, a mask each."""
    records = []
    for split in splits:
        image = _png(folder.parent / f"{folder.name}-src" / f"{split}.png")
        mask = _png(folder.parent / f"{folder.name}-src" / f"{split}_mask.png", 255)
        records.append(
            Record(str(image), None if split == "unlabeled" else "dim", split=split,
                   mask=str(mask) if masks else None)
        )  # fmt: skip
    write_dataset(folder, records, [], task="segmentation" if masks else "classification")
    return Dataset.load(folder)


def _bundle(task="classification", trained_on: Dataset | None = None):
    """What the plan reads of a bundle: its task and its training dataset's hash."""
    meta = {"dataset": {"hash": trained_on.hash if trained_on else ""}}
    return SimpleNamespace(task=task, meta=meta)


def _shown(plan):
    return [("item", e.path.name) if isinstance(e, Item) else ("reject", e.reason) for e in plan]


# --- the default split ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("splits", "foreign", "own"),
    [
        (["train", "val", "test"], "test", "test"),
        (["train", "val", "unlabeled"], "unlabeled", "unlabeled"),
        (["train", "val", "test", "unlabeled"], "test", "test"),
        (["train", "val"], "val", None),  # a segmentation dataset without a test split
        (["train"], "train", None),
    ],
)
def test_one_default_split_rule(tmp_path, splits, foreign, own):
    ds = _dataset(tmp_path / "data", splits)
    assert default_split(ds, own=False) == foreign
    if own is not None:
        assert default_split(ds, own=True) == own
    else:
        # The model learned from train and chose its epoch on val: not unseen images.
        with pytest.raises(BadDatasetError, match="trained on this dataset.*--split"):
            default_split(ds, own=True)


def test_the_plan_applies_the_rule_by_the_bundles_training_hash(tmp_path):
    ds = _dataset(tmp_path / "data", ["train", "val"])
    foreign = list(plan_inputs(_bundle(), [ds.root]))
    assert _shown(foreign) == [("item", "val.png")]
    assert not foreign[0].own
    with pytest.raises(BadDatasetError, match="name the split"):
        list(plan_inputs(_bundle(trained_on=ds), [ds.root]))
    named = list(plan_inputs(_bundle(trained_on=ds), [ds.root], split="train"))
    assert _shown(named) == [("item", "train.png")] and named[0].own


# --- one stream -----------------------------------------------------------------------


def test_inputs_become_one_ordered_stream_with_rejects_in_place(tmp_path):
    a = _png(tmp_path / "a.png")
    _png(tmp_path / "folder" / "b.png")
    _png(tmp_path / "folder" / "c.png")
    (tmp_path / "folder" / ".DS_Store").write_bytes(b"x")
    ds = _dataset(tmp_path / "data", ["test"])
    stdin = io.StringIO(f"{a}\n{tmp_path / 'gone.png'}\n")
    inputs = [tmp_path / "folder", ds.root, "-", tmp_path / "nope.png", a]
    plan = list(plan_inputs(_bundle(), inputs, stdin))
    kinds = [kind for kind, _ in _shown(plan)]
    names = [name for kind, name in _shown(plan) if kind == "item"]
    assert names == ["b.png", "c.png", "test.png", "a.png", "a.png"]
    assert kinds == ["reject", "item", "item", "item", "item", "reject", "reject", "item"]
    assert plan[3].source is not None and plan[3].source.split == "test"


def test_shards_are_contiguous_slices_of_the_stream_rejects_included(tmp_path):
    for i in range(5):
        _png(tmp_path / "imgs" / f"{i}.png")
    ds = _dataset(tmp_path / "data", ["test", "train"])
    inputs = [tmp_path / "imgs", tmp_path / "missing.png", ds.root]
    whole = _shown(plan_inputs(_bundle(), inputs))
    assert len(whole) == 7
    for n in (1, 2, 3, 4, 9):
        parts = [_shown(plan_inputs(_bundle(), inputs, shard=(i, n))) for i in range(1, n + 1)]
        assert sum(parts, []) == whole
        assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_a_segmenter_gets_each_dataset_images_true_mask(tmp_path):
    ds = _dataset(tmp_path / "seg", ["test"], masks=True)
    (item,) = plan_inputs(_bundle("segmentation"), [ds.root])
    assert item.truth is not None and item.truth.name == "test_mask.png"
    (item,) = plan_inputs(_bundle("classification"), [ds.root])
    assert item.truth is None


def test_the_plan_is_lazy_without_a_shard(tmp_path):
    taken = []

    def inputs():
        for i in range(100):
            taken.append(i)
            yield _png(tmp_path / f"{i}.png")

    plan = plan_inputs(_bundle(), inputs())
    next(plan)
    assert len(taken) == 1


# --- nothing read ---------------------------------------------------------------------


def test_nothing_read_is_one_check():
    seen = []
    tally = Tally(seen.append)
    tally(Reject("x.png", "not an image"))
    with pytest.raises(BadInputError, match=r"no image could be segmented \(1 input could"):
        tally.check("segmented")
    with pytest.raises(BadInputError, match="no image could be predicted"):
        tally.check("predicted", shard=(2, 3))  # its inputs were there and unreadable
    Tally().check("predicted", shard=(3, 3))  # an empty shard is fine
    tally.read = 1
    tally.check("predicted")
    assert seen == [Reject("x.png", "not an image")]


# --- the commands ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("plan-bundles")
    return {"clf": save_classifier(root / "clf"), "seg": save_segmenter(root / "seg")}


def _own(run, ds):
    """Record ``ds`` as the dataset ``run`` was trained on."""
    meta = json.loads((run / "imgkit.json").read_text())
    meta["dataset"] = {"path": str(ds.root), "hash": ds.hash}
    (run / "imgkit.json").write_text(json.dumps(meta))


def test_commands_share_the_default_split(bundles, tmp_path):
    ds = _dataset(tmp_path / "seg", ["train", "val"], masks=True)
    runner = CliRunner()
    out = tmp_path / "masks"
    result = runner.invoke(cli, ["segment", str(bundles["seg"]), str(ds.root), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert [p.name for p in out.iterdir()] == ["val.png"]  # not trained on: val, then train
    predicted = runner.invoke(cli, ["predict", str(bundles["clf"]), str(ds.root)])
    assert predicted.exit_code == 0 and "val.png" in predicted.stdout

    own = tmp_path / "own-seg"
    own.mkdir()
    save_segmenter(own / "run")
    _own(own / "run", ds)
    result = runner.invoke(cli, ["segment", str(own / "run"), str(ds.root), "-o", str(own / "m")])
    assert result.exit_code == 1 and "name the split to read with --split" in result.output
    result = runner.invoke(
        cli, ["segment", str(own / "run"), str(ds.root), "--split", "val", "-o", str(own / "m")]
    )
    assert result.exit_code == 0, result.output
    assert [p.name for p in (own / "m").iterdir()] == ["val.png"]


def test_segment_nothing_read_names_the_count_after_the_warnings(bundles, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    out = str(tmp_path / "m")
    result = CliRunner().invoke(cli, ["segment", str(bundles["seg"]), str(bad), "-o", out])
    assert result.exit_code == 1
    assert result.output.index("bad.png") < result.output.index(
        "no image could be segmented (1 input could not be read)"
    )
