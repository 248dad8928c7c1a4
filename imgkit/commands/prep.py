"""``imgkit prep``: make a dataset folder from images, CSVs, archives or fashion-mnist."""

from __future__ import annotations

import click

from imgkit.commands._common import (
    lock_output,
    output_option,
    seed_option,
    show_progress,
    stderr_console,
    warn,
)

_MAX_CLASS_ROWS = 30


class _Bars:
    """tqdm bars on stderr, one per task, fed by the library's progress callback."""

    def __init__(self):
        self.bars = {}

    def __call__(self, task: str, advance: int, total: int) -> None:
        from tqdm import tqdm

        bar = self.bars.get(task)
        if bar is None:
            bar = self.bars[task] = tqdm(total=total, desc=task, unit="img", leave=False)
        bar.update(advance)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def _summary(info: dict) -> None:
    from rich.table import Table

    counts = info["counts"]
    splits = list(counts)
    labels = sorted({label for per in counts.values() for label in per})
    table = Table(title=f"{info['path']}: {info['images']} images, {len(info['classes'])} classes")
    table.add_column("class")
    for split in splits:
        table.add_column(split, justify="right")
    for label in labels[:_MAX_CLASS_ROWS]:
        table.add_row(label or "(unlabeled)", *(str(counts[s].get(label, 0)) for s in splits))
    if len(labels) > _MAX_CLASS_ROWS:
        table.add_row(f"... {len(labels) - _MAX_CLASS_ROWS} more classes", *("" for _ in splits))
    # A multi-label image counts once per label: the total is of labels, not images.
    total = "labels (total)" if info.get("task") == "multilabel" else "total"
    table.add_row(total, *(str(sum(counts[s].values())) for s in splits), style="bold")
    console = stderr_console()
    console.print(table)
    if info["rejected"]:
        console.print(
            f"rejected {info['rejected']} files ({info['bad']} unreadable or unusable, "
            f"{info['skipped']} skipped), listed in {info['rejects_file']}",
            soft_wrap=True,
        )
        for reason, n in info["reject_reasons"][:5]:
            console.print(f"  {n:>6}  {reason}", soft_wrap=True)
    for message in info["warnings"]:
        warn(message)


@click.command("prep")
@click.argument("sources", nargs=-1, required=True)
@output_option(required=True, help_text="Dataset folder to write.")
@click.option(
    "--val",
    type=click.FloatRange(0, 1, max_open=True),
    default=None,
    help="Fraction for validation, stratified by class (default 0.1).",
)
@click.option(
    "--test",
    type=click.FloatRange(0, 1, max_open=True),
    default=None,
    help="Fraction for test (default 0.1; 0 when a source has its own test set).",
)
@seed_option
@click.option(
    "--max-bad",
    default=None,
    metavar="N",
    help="Stop if more than N images are unreadable: a count (10) or a fraction (0.05). "
    "Hidden and non-image files do not count. Default: no limit.",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace an existing dataset folder (once the new one is complete).",
)
@click.option(
    "--idx-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder holding the four fashion-mnist IDX files "
    "(default: /usr/share/datasets/fashion-mnist, then ~/.keras/datasets/fashion-mnist).",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="Keep at most N images per split of each source (fashion-mnist: of train and of "
    "test), chosen stratified by class with --seed. For quick runs.",
)
@click.option(
    "--name-labels/--no-name-labels",
    default=None,
    help="Label images by Kaggle-style file names (cat.12.jpg is 'cat'): always, even with "
    "one label, rejecting names that do not fit; or never. Default: only when every name "
    "fits (1 stray per 100 allowed) and there are at least two labels.",
)
@click.option(
    "--masks",
    type=click.Path(exists=True),
    default=None,
    help="Segmentation: a folder of masks matched to the images by file stem (cell7.png or "
    "cell7_mask.png for cell7.jpg), or a CSV with path,mask columns. Masks may be 0/1, "
    "0/255, palette or RGB with one object colour; splits are random.",
)
@click.option(
    "--mask-classes",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    metavar="FILE",
    help="Multi-class masks: a text file naming the classes, one per line, for the mask "
    "values 0, 1, ..., C (the first is the background). Masks are index or palette PNGs "
    "of those values; a value outside them sends the image to rejects.csv.",
)
@click.option(
    "--mask-colors",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    metavar="FILE",
    help="Multi-class masks in colour: a text file of lines 'NAME R G B', one per class, "
    "the background first (value 0). RGB and palette masks are read by colour; a colour "
    "not in the file sends the image to rejects.csv. A line 'ignore R G B' gives a colour "
    "of pixels to ignore.",
)
@click.option(
    "--mask-ignore",
    type=click.IntRange(0, 255),
    default=None,
    metavar="VALUE",
    help="Multi-class masks: the mask value of pixels nobody labelled (PASCAL VOC's and "
    "Cityscapes' 255), above the classes' values: kept, but left out of training's loss "
    "and of every score. Also a line 'VALUE ignore' in the --mask-classes file.",
)
@click.option(
    "--group-by",
    default=None,
    metavar="REGEX",
    help="Keep related images in one split: a regular expression searched in each path "
    "relative to its source; its first group (or the whole match) is the group, e.g. "
    "'^([^/]+)/' for one folder per patient. Unmatched images are groups of their own.",
)
@click.option(
    "--label-sep",
    default=" ",
    show_default="a space",
    metavar="SEP",
    help="Multi-label CSVs: what separates an image's labels in the labels (or tags) column.",
)
@click.option(
    "--images",
    "images_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Multi-label CSVs: the folder of the images a CSV names; needed for Planet's "
    "image_name,tags (names without extension: train_0 is DIR/train_0.jpg or .tif).",
)
@click.option(
    "--allow-empty",
    is_flag=True,
    help="Multi-label CSVs: keep a row with no label as an image that has none (a "
    "negative for every label); without it such a row goes to rejects.csv. With "
    "--pseudo: take an image whose every label is surely absent.",
)
@click.option(
    "--folds",
    type=click.IntRange(min=2),
    default=None,
    metavar="K",
    help="Cross-validation: give every labelled image a fold 1..K (stratified by class, or "
    "by every label at once for multi-label data; each group whole) in place of a val "
    "split; a test split only with --test. Given an existing dataset folder, its images "
    "are not read again (its val joins the folds).",
)
@click.option(
    "--pseudo",
    is_flag=True,
    help="SOURCES are predictions CSVs (imgkit predict), with at most one dataset folder "
    "to add them to: each prediction at least --min-confidence sure becomes a training "
    "image labelled with its predicted class, marked pseudo (never validated on). A "
    "multi-label prediction is taken only when every label is sure (p >= P or p <= 1-P), "
    "labelled with the labels at p >= P.",
)
@click.option(
    "--min-confidence",
    type=click.FloatRange(0, 1, min_open=True),
    default=None,
    metavar="P",
    help="With --pseudo: the least confidence a prediction needs to be taken  [default: 0.9].",
)
def command(sources, output, val, test, seed, max_bad, overwrite, idx_dir, limit, name_labels,
            masks, mask_classes, mask_colors, mask_ignore, group_by, label_sep, images_dir,
            allow_empty, folds, pseudo, min_confidence):  # fmt: skip
    """Make a dataset folder from images, CSVs, archives or the built-in fashion-mnist.

    SOURCES are any of: a folder with one subfolder of images per class (the label is
    the subfolder name); a folder of images named <label>.<id>.<ext> like cat.12.jpg
    (the label is the first part; see --name-labels); a CSV with a header row
    path,label[,group][,split] (paths relative to the CSV); a folder of other images,
    like a Kaggle test set 1.jpg ... 12500.jpg (taken as unlabeled); a zip or tar
    archive (.zip .tar .tar.gz .tgz .tar.bz2 .tar.xz) of any of these folders; a
    folder of IDX files; a breast histopathology (IDC) folder
    <patient>/<0|1>/<patient>_idx5_x<X>_y<Y>_class<N>.png (the label is the 0/1
    folder, checked against class<N> in the name; each patient stays in one split);
    or the name fashion-mnist.

    Multi-label: a CSV with a header path,labels (or Planet's image_name,tags with
    --images DIR) makes a dataset of task multilabel: each image has all the labels
    in its row (space-separated, or --label-sep), and the splits are stratified for
    every label at once (iterative stratification). So does a CSV of one 0/1 column
    per label (path,cat,dog,person: a path or image_name column, and every other
    column but group holding only 0 and 1). A row with no labels (unless
    --allow-empty), a missing image or a cell other than 0/1 goes to DATA/rejects.csv.

    With --folds K every labelled image gets a cross-validation fold (manifest.csv's
    fold column) for `imgkit train --fold k` and `imgkit cv`. Given one dataset folder
    as the source, --folds writes a new folder pointing at its images (or, with -o the
    same folder and --overwrite, changes it in place). With --pseudo, SOURCES are
    predictions CSVs and at most one dataset folder: see --pseudo.

    An archive's images are extracted into DATA/images/<archive name>/; a single
    top-level folder inside it is a wrapper, not a class. Extraction is safe: members
    with absolute or '..' paths, links, devices, over 256 MB or compressed over 200:1
    are refused and listed in DATA/rejects.csv; an archive of over 1,000,000 members or
    64 GB is refused whole.

    Every image is opened once; unreadable ones (empty, truncated, not an image, too
    large) are listed with the reason in DATA/rejects.csv and the run goes on. Splits
    are stratified by class and reproducible with --seed. The inputs are never
    modified. Prints the dataset folder on stdout and a summary on stderr.

    \b
    Example:
        imgkit prep photos/ -o data/pets --val 0.15 --test 0.15
        imgkit prep labels.csv -o data/xray --max-bad 0.01
        imgkit prep train.zip -o data/dvc --val 0.2        # cat.1.jpg, dog.1.jpg, ...
        imgkit prep test1.zip -o data/dvc-test             # 1.jpg ... 12500.jpg
        imgkit prep fashion-mnist -o data/fashion --limit 2000
        imgkit prep images/ --masks masks/ -o data/seg --val 0.3
        imgkit prep scenes/ --masks labels/ --mask-classes classes.txt -o data/scenes
        imgkit prep IDC_regular_ps50_idx5/ -o data/idc --val 0.15 --test 0.15
        imgkit prep scans.csv -o data/scans --group-by '^(patient[0-9]+)_'
        imgkit prep train_v2.csv --images train-jpg/ -o data/planet   # image_name,tags
        imgkit prep findings.csv -o data/xray --allow-empty   # path,effusion,mass,...
        imgkit prep train.zip -o data/dvc5 --folds 5             # cross-validation
        imgkit prep data/dvc --folds 5 -o data/dvc5              # folds, no image re-read
        imgkit prep data/dvc5 preds.csv --pseudo --min-confidence 0.95 -o data/dvc5p
    """
    from imgkit.data.bad_inputs import parse_max_bad
    from imgkit.data.prep import prepare
    from imgkit.data.prep_options import PrepOptions

    try:
        parse_max_bad(max_bad)
    except Exception as e:
        raise click.BadParameter(str(e), param_hint="--max-bad") from None
    lock_output(output)
    derived = _derived(sources, output, folds, seed, pseudo, min_confidence, overwrite, allow_empty)
    if derived is not None:
        _summary(derived)
        click.echo(derived["path"])
        return
    options = PrepOptions(
        val=val,
        test=test,
        seed=seed,
        max_bad=max_bad,
        overwrite=overwrite,
        idx_dir=idx_dir,
        limit=limit,
        name_labels=name_labels,
        masks=masks,
        mask_classes=mask_classes,
        mask_colors=mask_colors,
        mask_ignore=mask_ignore,
        group_by=group_by,
        label_sep=label_sep,
        images=images_dir,
        folds=folds,
        allow_empty=allow_empty,
    )
    bars = _Bars() if show_progress() else None
    try:
        info = prepare(list(sources), output, options, progress=bars)
    finally:
        if bars is not None:
            bars.close()
    _summary(info)
    click.echo(info["path"])


def _derived(sources, output, folds, seed, pseudo, min_confidence, overwrite, allow_empty):
    """A dataset made from a dataset folder and predictions (--folds, --pseudo) without
    reading the images, or None when SOURCES are images to read."""
    from imgkit.data.derive import Derivation, derive, is_dataset

    if min_confidence is not None and not pseudo:
        raise click.UsageError("--min-confidence goes with --pseudo")
    bases = [s for s in sources if is_dataset(s)]
    if not pseudo:
        if folds is None or len(sources) != 1 or not bases:
            return None
        return derive(bases[0], output, Derivation(folds, seed), overwrite=overwrite)
    if len(bases) > 1:
        raise click.UsageError(f"--pseudo adds predictions to one dataset folder, not {bases}")
    predictions = tuple(s for s in sources if s not in bases)
    if not predictions:
        raise click.UsageError("--pseudo needs a predictions CSV among SOURCES")
    confidence = 0.9 if min_confidence is None else min_confidence
    how = Derivation(folds, seed, predictions, confidence, allow_empty)
    return derive(bases[0] if bases else None, output, how, overwrite=overwrite)
