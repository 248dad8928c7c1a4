"""Open any image safely and turn it into a uint8 array.

Every path into pixels goes through :func:`open_image`: it names what is wrong with a
file (empty, not an image, truncated, too large, a folder, a broken link) as a
:class:`~imgkit.errors.BadImageError`, applies the EXIF orientation, and reduces every
colour mode to "L" or "RGB", so the rest of imgkit sees only two kinds of image.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from imgkit.data.tiff_quiet import quiet_libtiff
from imgkit.errors import BadImageError, BadInputError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")

# Pillow's own warning threshold (about 9459 x 9459): large enough for any real photo,
# small enough that one hostile file cannot take gigabytes of memory.
DEFAULT_MAX_PIXELS = 89_478_485

# How an image is fitted to a model's input size (``--resize``): the one list of them.
RESIZE_MODES = ("stretch", "pad", "crop")
# Channels an image is reduced to: 1 (grey, "L") or 3 ("RGB").
CHANNELS = (1, 3)

SYSTEM_FILES = frozenset({"thumbs.db", "desktop.ini", "ehthumbs.db", "icon\r"})
SYSTEM_FOLDERS = frozenset({"__macosx", "$recycle.bin", "system volume information"})

# Reasons that mean "not meant as an image" rather than "a broken image"; rejects with
# them never count against --max-bad.
SKIPPED = "skipped"
HIDDEN_REASON = f"{SKIPPED}: hidden or system file"
HIDDEN_FOLDER_REASON = f"{SKIPPED}: hidden or system folder (not searched)"

_ORIENTATION_TAG = 0x0112
_SWAPS_AXES = {5, 6, 7, 8}  # EXIF orientations that turn the image by 90 degrees
_GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}


def is_skipped(reason: str) -> bool:
    """True for a reject reason that is not a broken image (hidden file, wrong type)."""
    return reason.startswith(SKIPPED)


def not_image_reason(path: str | os.PathLike) -> str:
    """The reject reason for a file whose extension is not an image type."""
    suffix = Path(path).suffix
    what = f"extension {suffix!r}" if suffix else "no extension"
    return f"{SKIPPED}: not an image file type ({what}; accepted: {' '.join(IMAGE_EXTENSIONS)})"


def is_hidden(path: str | os.PathLike) -> bool:
    """True for dotfiles, macOS ``._name`` forks, ``.DS_Store``, ``Thumbs.db``, ``desktop.ini``."""
    name = Path(path).name
    return name.startswith(".") or name.lower() in SYSTEM_FILES or name.lower() in SYSTEM_FOLDERS


def has_image_extension(path: str | os.PathLike) -> bool:
    """True when the file name ends in one of :data:`IMAGE_EXTENSIONS` (any case)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


# --- opening ------------------------------------------------------------------------


def _precheck(path: Path) -> None:
    """Name the common non-image cases before Pillow gives a vaguer message."""
    try:
        _precheck_unguarded(path)
    except OSError as e:
        raise BadImageError(path, f"cannot read the file ({e.strerror or e})") from None


def _precheck_unguarded(path: Path) -> None:
    if path.is_symlink() and not path.exists():
        raise BadImageError(
            path, f"broken symbolic link (points to {os.readlink(path)}, which does not exist)"
        )
    if not path.exists():
        raise BadImageError(path, "no such file")
    if path.is_dir():
        raise BadImageError(path, "is a folder, not an image file")
    if path.stat().st_size == 0:
        raise BadImageError(path, "empty file (0 bytes)")


def _too_large(path: Path, width: int, height: int, limit: int) -> BadImageError:
    return BadImageError(
        path,
        f"image too large: {width}x{height} = {width * height:,} pixels, over the limit of "
        f"{limit:,} pixels (a decompression bomb?)",
    )


def _open_lazily(path: Path, max_pixels: int) -> Image.Image:
    """Read only the header, and refuse huge images before any pixel is decoded."""
    quiet_libtiff()  # a damaged TIFF's libtiff errors: its reject reason says it once
    try:
        # Pillow warns about (and above twice its limit refuses) huge images while
        # reading the header; both become a clear reason here. catch_warnings is not
        # thread-safe, but a race can at worst leave this "error" filter in place,
        # which is the stricter behaviour.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
        raise BadImageError(path, f"image too large (a decompression bomb?): {e}") from None
    except UnidentifiedImageError:
        raise BadImageError(path, f"not an image file ({_sniff(path)})") from None
    except PermissionError:
        raise BadImageError(path, "cannot read the file (permission denied)") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise BadImageError(path, _decode_reason(e, "cannot read the image header")) from None
    width, height = img.size
    if width * height > max_pixels:
        img.close()
        raise _too_large(path, width, height, max_pixels)
    if width < 1 or height < 1:
        img.close()
        raise BadImageError(path, f"image has no pixels ({width}x{height})")
    return img


def _decode_reason(error: BaseException, what: str) -> str:
    message = str(error) or type(error).__name__
    if "truncated" in message.lower() or isinstance(error, EOFError):
        return f"truncated or incomplete image file ({message})"
    return f"{what} ({message})"


def _sniff(path: Path) -> str:
    """A hint at what a non-image file is, for the reject reason."""
    try:
        head = path.read_bytes()[:512]
    except OSError:
        return "unreadable"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "unrecognised format"
    return "looks like text"


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(_ORIENTATION_TAG, 1))
    except Exception:  # a broken EXIF block must not make a good image unreadable
        return 1


def _draft(img: Image.Image, draft_size: tuple[int, int]) -> None:
    """Let libjpeg decode at 1/2, 1/4 or 1/8 scale when the target is that much smaller."""
    if img.format != "JPEG":
        return
    h, w = draft_size
    if _orientation(img) in _SWAPS_AXES:
        # The stored pixels are turned relative to what is shown; ask in stored axes.
        h, w = w, h
    # draft() keeps both sides at least the requested size, so stretch, pad and crop
    # all still get at least as many pixels as they output.
    img.draft(img.mode, (max(1, w), max(1, h)))


def _composite_on_white(img: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def _high_depth_to_l(img: Image.Image) -> Image.Image:
    """16-bit, 32-bit integer and float grayscale to 8-bit "L"."""
    a = np.asarray(img)
    if img.mode.startswith("I;16"):
        # The full 16-bit range maps to 0-255, the same for every image of the set.
        scaled = a.astype(np.float64) / 257.0
    else:
        a = a.astype(np.float64)
        lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
        if img.mode == "F" and lo >= 0 and hi <= 1:
            scaled = a * 255.0
        elif lo >= 0 and hi <= 255:
            scaled = a
        elif lo >= 0 and hi <= 65535:
            scaled = a / 257.0
        else:
            scaled = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
    return Image.fromarray(np.clip(np.rint(np.nan_to_num(scaled)), 0, 255).astype(np.uint8))


def _to_l_or_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    transparent = "transparency" in img.info
    if mode in ("L", "RGB") and not transparent:
        return img
    if mode == "1":
        return img.convert("L")
    if mode in ("I", "F") or mode.startswith("I;16"):
        return _high_depth_to_l(img)
    if mode in ("LA", "La") or (mode == "L" and transparent):
        return _composite_on_white(img).convert("L")
    if mode in ("RGBA", "RGBa", "PA") or transparent:
        return _composite_on_white(img)
    if mode == "P":
        return img.convert("RGB")
    return img.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX


def open_image(
    path: str | os.PathLike,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft_size: tuple[int, int] | None = None,
) -> Image.Image:
    """Open, check and fully decode one image.

    Args:
        path: the image file.
        max_pixels: refuse images with more pixels than this, before decoding them.
        draft_size: (height, width) the caller will resize to; big JPEGs are then
            decoded at a reduced scale (never below this size), which is much faster.

    Returns:
        A loaded image in mode "L" (grayscale inputs) or "RGB" (everything else), with
        its EXIF orientation applied and any transparency composited on white.

    Raises:
        BadImageError: the file is missing, empty, a folder, a broken link, not an
            image, truncated, corrupt or too large; ``reason`` says which.
    """
    path = Path(path)
    _precheck(path)
    img = _open_lazily(path, max_pixels)
    try:
        if draft_size is not None:
            _draft(img, draft_size)
        # LOAD_TRUNCATED_IMAGES stays off: a cut-off file must fail here, not be padded
        # with grey and silently trained on.
        img.load()
        shown = ImageOps.exif_transpose(img) if _orientation(img) != 1 else img
        out = _to_l_or_rgb(shown)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
        img.close()
        raise BadImageError(path, f"image too large (a decompression bomb?): {e}") from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as e:
        img.close()
        raise BadImageError(path, _decode_reason(e, "cannot decode the image")) from None
    if out is not img:
        # Multi-frame files (GIF, TIFF) keep their file open until closed.
        img.close()
    return out


def check_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """Open and decode one image once, as :func:`open_image` does.

    Returns:
        The (width, height) of the image as shown (after EXIF orientation).

    Raises:
        BadImageError: the image cannot be used, with the reason.
    """
    with open_image(path, max_pixels) as img:
        return img.size


# --- resizing -----------------------------------------------------------------------

# BILINEAR in Pillow widens its filter when shrinking, so it is antialiased, and it is
# cheaper than LANCZOS on big photos.
_RESAMPLE = Image.Resampling.BILINEAR


def _border_colour(img: Image.Image) -> tuple[int, ...] | int:
    """The median colour of the image's outermost pixels (what padding should look like)."""
    a = np.asarray(img)
    if a.ndim == 2:
        a = a[..., None]
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]], axis=0)
    median = np.median(border, axis=0).round().astype(int)
    return int(median[0]) if img.mode == "L" else tuple(int(v) for v in median)


def _pad(img: Image.Image, w: int, h: int) -> Image.Image:
    iw, ih = img.size
    scale = min(w / iw, h / ih)
    nw, nh = max(1, min(w, round(iw * scale))), max(1, min(h, round(ih * scale)))
    inner = img.resize((nw, nh), _RESAMPLE) if (nw, nh) != img.size else img
    canvas = Image.new(img.mode, (w, h), _border_colour(inner))
    canvas.paste(inner, ((w - nw) // 2, (h - nh) // 2))
    return canvas


def _crop(img: Image.Image, w: int, h: int) -> Image.Image:
    iw, ih = img.size
    if iw * h > ih * w:  # wider than the target: trim the sides
        cw, ch = ih * w / h, float(ih)
    else:  # taller: trim top and bottom
        cw, ch = float(iw), iw * h / w
    left, top = (iw - cw) / 2, (ih - ch) / 2
    # resize(box=...) crops and scales in one pass, with sub-pixel accuracy.
    return img.resize((w, h), _RESAMPLE, box=(left, top, left + cw, top + ch))


def to_array(
    img: Image.Image,
    size: tuple[int, int],
    channels: int = 3,
    resize: str = "stretch",
) -> np.ndarray:
    """Fit an image to ``size`` and return its pixels.

    Args:
        img: an image (any mode; normally from :func:`open_image`).
        size: (height, width) of the result.
        channels: 1 for grayscale, 3 for RGB.
        resize: "stretch" (resize to exactly ``size``, ignoring the aspect ratio),
            "pad" (fit the longest side, centre, and pad with the median border
            colour) or "crop" (centre-crop to the target's aspect, then resize).

    Returns:
        A uint8 array of shape (height, width, channels).
    """
    h, w = int(size[0]), int(size[1])
    if h < 1 or w < 1:
        raise BadInputError(f"image size must be positive, got {h}x{w}")
    if channels not in CHANNELS:
        raise BadInputError(f"channels must be 1 or 3, got {channels}")
    if resize not in RESIZE_MODES:
        raise BadInputError(
            f"unknown resize mode {resize!r} (choose from {', '.join(RESIZE_MODES)})"
        )
    target = "L" if channels == 1 else "RGB"
    if img.mode != target:
        img = _to_l_or_rgb(img)
        if img.mode != target:
            img = img.convert(target)
    if img.size != (w, h):
        if resize == "pad":
            img = _pad(img, w, h)
        elif resize == "crop":
            img = _crop(img, w, h)
        else:
            img = img.resize((w, h), _RESAMPLE)
    return np.asarray(img, dtype=np.uint8).reshape(h, w, channels)


def load_array(
    path: str | os.PathLike,
    size: tuple[int, int],
    channels: int = 3,
    resize: str = "stretch",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Open one image and fit it to ``size``: :func:`open_image` then :func:`to_array`.

    Returns:
        A uint8 array of shape (height, width, channels).

    Raises:
        BadImageError: the image cannot be used.
    """
    with open_image(path, max_pixels, draft_size=size) as img:
        return to_array(img, size, channels, resize)


# --- finding images -----------------------------------------------------------------


def _walk(folder: Path, seen: set[str], paths: list[Path], rejects: list) -> None:
    from imgkit.data.records import Reject

    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as e:
        rejects.append(Reject(str(folder), f"cannot list the folder ({e.strerror or e})"))
        return
    for entry in entries:
        path = Path(entry.path)
        if is_hidden(entry.name):
            is_dir = entry.is_dir()
            rejects.append(Reject(str(path), HIDDEN_FOLDER_REASON if is_dir else HIDDEN_REASON))
            continue
        if entry.is_symlink() and not path.exists():
            target = os.readlink(path)
            rejects.append(
                Reject(
                    str(path), f"broken symbolic link (points to {target}, which does not exist)"
                )
            )
            continue
        if entry.is_dir():
            # A folder named like an image (x.jpg/) is walked into; links to folders are
            # followed once, so a link loop cannot recurse forever.
            real = os.path.realpath(path)
            if real in seen:
                continue
            seen.add(real)
            _walk(path, seen, paths, rejects)
        elif has_image_extension(entry.name):
            paths.append(path)
        else:
            rejects.append(Reject(str(path), not_image_reason(entry.name)))


def list_images(root: str | os.PathLike) -> tuple[list[Path], list]:
    """Find image files under ``root``, recursively.

    Args:
        root: a folder (or a single image file).

    Returns:
        ``(paths, rejects)``: image paths (``root`` joined with the relative path),
        sorted by their path below ``root``; and one :class:`imgkit.data.records.Reject` per
        hidden or system file or folder, non-image file and broken symbolic link.

    Raises:
        BadInputError: ``root`` does not exist.
    """
    from imgkit.data.records import Reject

    root = Path(root)
    if root.is_symlink() and not root.exists():
        raise BadInputError(f"{root}: broken symbolic link")
    if not root.exists():
        raise BadInputError(f"{root}: no such file or folder")
    if not root.is_dir():
        if is_hidden(root):
            return [], [Reject(str(root), HIDDEN_REASON)]
        if has_image_extension(root):
            return [root], []
        return [], [Reject(str(root), not_image_reason(root))]
    paths: list[Path] = []
    rejects: list = []
    _walk(root, {os.path.realpath(root)}, paths, rejects)
    paths.sort(key=lambda p: p.relative_to(root).as_posix())
    rejects.sort(key=lambda r: r.path)
    return paths, rejects
