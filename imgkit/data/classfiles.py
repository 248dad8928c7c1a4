"""The class files of multi-class masks: ``prep --mask-classes`` and ``--mask-colors``.

``--mask-classes FILE`` names the classes one per line for the mask values 0..C (the
background first); a line ``255 ignore`` declares a value of pixels nobody labelled.
``--mask-colors FILE`` gives each class's colour, lines ``NAME R G B``; a line
``ignore R G B`` declares a colour of such pixels (PASCAL VOC's ``224 224 192``).
:func:`class_table` reads them into a :class:`~imgkit.data.classmasks.MaskClasses`.
"""

from __future__ import annotations

import os
from pathlib import Path

from imgkit.data.classmasks import (
    IGNORE,
    IGNORE_NAME,
    MAX_CLASSES,
    MIN_CLASSES,
    MaskClasses,
    default_colors,
)
from imgkit.errors import BadInputError


def _lines(path: Path, what: str) -> list[tuple[int, str]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise BadInputError(f"{what} {path}: cannot read it ({e})") from e
    return [
        (n, line.strip())
        for n, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.strip().startswith("#")
    ]


def _check_names(names: list[str], path: Path, what: str) -> None:
    if len(names) < MIN_CLASSES:
        raise BadInputError(
            f"{what} {path}: {len(names)} class(es); a multi-class mask needs the background "
            "and at least two classes (binary masks need no class table)"
        )
    if len(names) > MAX_CLASSES:
        raise BadInputError(f"{what} {path}: {len(names)} classes, at most {MAX_CLASSES}")
    seen = set()
    for name in names:
        if name in seen:
            raise BadInputError(f"{what} {path}: class {name!r} is named twice")
        seen.add(name)


def _ignored_value(line: str) -> int | None:
    """The value a class file's ``255 ignore`` (or ``ignore 255``) line names, else None."""
    fields = line.split()
    if len(fields) == 2 and IGNORE_NAME in (fields[0].lower(), fields[1].lower()):
        number = fields[1] if fields[0].lower() == IGNORE_NAME else fields[0]
        if number.isdigit():
            return int(number)
    return None


def read_class_file(path: str | os.PathLike) -> tuple[list[str], list[int]]:
    """(names, ignored values) from a --mask-classes file: one name per line, for the
    values 0, 1, ...; a line ``255 ignore`` declares a value of pixels to ignore.

    Blank lines and lines starting with # are skipped.
    """
    path = Path(path)
    names, ignored = [], []
    for _, line in _lines(path, "--mask-classes"):
        value = _ignored_value(line)
        if value is None:
            names.append(line)
        else:
            ignored.append(value)
    _check_names(names, path, "--mask-classes")
    return names, ignored


def read_class_names(path: str | os.PathLike) -> list[str]:
    """Class names from a --mask-classes file: one per line, for the values 0, 1, ..."""
    return read_class_file(path)[0]


def read_color_table(path: str | os.PathLike) -> tuple[list, list, list]:
    """(names, colours, ignored colours) from a --mask-colors file: lines ``NAME R G B``,
    value 0 first; lines ``ignore R G B`` give colours of pixels to ignore.

    A name may hold spaces (the last three fields are the colour); blank lines and
    lines starting with # are skipped.
    """
    path = Path(path)
    names, colors, ignored = [], [], []
    for n, line in _lines(path, "--mask-colors"):
        fields = line.replace(",", " ").split()
        try:
            rgb = tuple(int(v) for v in fields[-3:])
        except ValueError:
            rgb = ()
        if len(fields) < 4 or len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
            raise BadInputError(
                f"--mask-colors {path}:{n}: expected 'NAME R G B' with R, G, B in 0..255, "
                f"got {line!r}"
            )
        if rgb in colors or rgb in ignored:
            raise BadInputError(f"--mask-colors {path}:{n}: colour {rgb} is given twice")
        name = " ".join(fields[:-3])
        if name.lower() == IGNORE_NAME:
            ignored.append(rgb)
            continue
        names.append(name)
        colors.append(rgb)
    _check_names(names, path, "--mask-colors")
    return names, colors, ignored


def _check_ignored(values: list[int], names: list[str], where: str) -> tuple[int, ...]:
    """The ignored values, sorted and checked: none a class's value, 255 free for them."""
    for value in values:
        if not 0 <= value <= 255:
            raise BadInputError(f"{where}: ignore value {value} is not a mask value (0..255)")
        if value < len(names):
            raise BadInputError(
                f"{where}: ignore value {value} is class {names[value]!r}'s; an ignored "
                f"value must be above the classes' 0..{len(names) - 1}"
            )
    return tuple(sorted(set(values)))


def mask_classes_from(
    classes_file: str | os.PathLike | None,
    colors_file: str | os.PathLike | None,
    ignore: int | None = None,
) -> MaskClasses | None:
    """The class table prep's --mask-classes, --mask-colors and --mask-ignore give
    (None: binary)."""
    if classes_file is None and colors_file is None:
        return None
    values = [] if ignore is None else [ignore]
    if colors_file is None:
        names, listed_ignored = read_class_file(classes_file)
        colors, ignored_colors, by_colour = default_colors(len(names)), [], False
    else:
        names, colors, ignored_colors = read_color_table(colors_file)
        by_colour, listed_ignored = True, []
        if classes_file is not None:
            listed, listed_ignored = read_class_file(classes_file)
            if listed != names:
                raise BadInputError(
                    f"--mask-classes {classes_file} and --mask-colors {colors_file} name other "
                    f"classes ({', '.join(listed)} vs {', '.join(names)}); give the names once"
                )
    _check_ignored(listed_ignored, names, f"--mask-classes {classes_file}")
    values = _check_ignored(listed_ignored + values, names, "--mask-ignore")
    if (values or ignored_colors) and len(names) > IGNORE:
        raise BadInputError(
            f"{len(names)} classes leave no value for ignored pixels: at most {IGNORE} "
            "classes with an ignore value or colour"
        )
    return MaskClasses(
        tuple(names), tuple(colors), by_colour, values, tuple(tuple(c) for c in ignored_colors)
    )


def class_table(masks, classes_file, colors_file, ignore: int | None = None) -> MaskClasses | None:
    """prep's class table, read before any image is: None for binary masks.

    Raises:
        BadInputError: a class file or --mask-ignore without --masks, --mask-ignore
            without a class file, or a bad class file.
    """
    if masks is None:
        if classes_file is not None or colors_file is not None or ignore is not None:
            raise BadInputError(
                "--mask-classes, --mask-colors and --mask-ignore describe --masks; give --masks"
            )
        return None
    if ignore is not None and classes_file is None and colors_file is None:
        raise BadInputError(
            "--mask-ignore is for multi-class masks: name their classes with --mask-classes "
            "or --mask-colors (binary masks have no ignored value)"
        )
    return mask_classes_from(classes_file, colors_file, ignore)
