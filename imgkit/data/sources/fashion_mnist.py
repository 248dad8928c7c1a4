"""The built-in ``fashion-mnist`` source: Zalando's 70,000 clothing images.

The four IDX files are looked for, in order, in ``--idx-dir``, Debian's
``dataset-fashion-mnist`` package and Keras's download cache; only then does Keras try
to download them, which fails at once without a network.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from imgkit.data.sources.base import SourceContext, SourceResult
from imgkit.data.sources.idx_folder import IdxPart, read_idx, write_parts
from imgkit.errors import BadInputError, OfflineError

NAME = "fashion-mnist"
DESCRIPTION = "fashion-mnist: the built-in Fashion-MNIST data set (60,000 train + 10,000 test)"
ALIASES = ("fashion-mnist", "fashion_mnist", "fashionmnist")

# In label order (label 0 is "T-shirt/top"). The "/" is fine in a label; files are
# named by label index, never by class name.
CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]

FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")


def keras_cache_dir() -> Path:
    """Where ``keras.datasets.fashion_mnist`` keeps its download."""
    home = os.environ.get("KERAS_HOME") or str(Path.home() / ".keras")
    return Path(home) / "datasets" / "fashion-mnist"


def candidate_dirs(idx_dir: str | os.PathLike | None = None) -> list[Path]:
    """The folders searched for the IDX files, in order."""
    dirs = [Path(idx_dir)] if idx_dir else []
    return [*dirs, DEBIAN_DIR, keras_cache_dir()]


def _find(folder: Path, name: str) -> Path | None:
    # Accept the files as shipped (.gz) or already decompressed.
    for candidate in (folder / name, folder / name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def find_files(folder: Path) -> dict[str, tuple[Path, Path]] | None:
    """The four files in ``folder`` as {split: (images, labels)}, or None if any is missing.

    Raises:
        BadInputError: ``folder`` holds some of the files but not all four.
    """
    found = {split: tuple(_find(folder, n) for n in names) for split, names in FILES.items()}
    missing = [
        n
        for split, names in FILES.items()
        for n, p in zip(names, found[split], strict=True)
        if p is None
    ]
    if not missing:
        return found  # type: ignore[return-value]
    if len(missing) < 4:
        raise BadInputError(
            f"{folder}: has some Fashion-MNIST IDX files but not {', '.join(missing)}"
        )
    return None


def _load_with_keras() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    # Imported here: only this last-resort download needs Keras (and its backend).
    from imgkit.backend import import_keras_quietly

    import_keras_quietly()
    import keras

    return keras.datasets.fashion_mnist.load_data()


def offline_message(searched: list[Path], error: BaseException | None) -> str:
    files = ", ".join(n for names in FILES.values() for n in names)
    where = ", ".join(str(d) for d in searched)
    why = f" ({type(error).__name__}: {error})" if error else ""
    return (
        f"fashion-mnist: the IDX files are not in {where}, and downloading them with Keras "
        f"failed{why}. Put the four files {files} in a folder and pass --idx-dir FOLDER, "
        f"or install Debian's copy: apt-get install dataset-fashion-mnist"
    )


def matches(spec: str) -> bool:
    return spec.lower() in ALIASES


def read(spec: str, ctx: SourceContext) -> SourceResult:
    """Write Fashion-MNIST (or a ``--limit`` subset) as PNGs and records.

    Raises:
        OfflineError: the files are nowhere here and cannot be downloaded.
    """
    searched = candidate_dirs(ctx.idx_dir)
    for folder in searched:
        files = find_files(folder) if folder.is_dir() else None
        if files:
            parts = [
                IdxPart(
                    split, read_idx(images), read_idx(labels), "test" if split == "test" else None
                )
                for split, (images, labels) in files.items()
            ]
            origin = f"IDX files in {folder.resolve()}"
            break
    else:
        try:
            (x_train, y_train), (x_test, y_test) = _load_with_keras()
        except Exception as e:  # Keras raises a bare Exception for a failed download
            raise OfflineError(offline_message(searched, e)) from e
        parts = [IdxPart("train", x_train, y_train, None), IdxPart("test", x_test, y_test, "test")]
        origin = "keras.datasets.fashion_mnist"
    return write_parts(parts, CLASSES, ctx, f"fashion-mnist ({origin})")
