"""imgkit.data.images: every kind of bad or unusual image file, and the resize modes."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from imgkit.data.images import (
    check_image,
    is_hidden,
    is_skipped,
    list_images,
    load_array,
    open_image,
    to_array,
)
from imgkit.errors import BadImageError, BadInputError


def reason_for(path, **kwargs) -> str:
    with pytest.raises(BadImageError) as info:
        open_image(path, **kwargs)
    assert info.value.path == str(path)
    return info.value.reason


# --- files that are not usable images -------------------------------------------------


def test_empty_file(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    assert "empty file" in reason_for(tmp_path / "empty.png")


def test_text_named_jpg(tmp_path):
    (tmp_path / "notes.jpg").write_text("just some text\n")
    reason = reason_for(tmp_path / "notes.jpg")
    assert "not an image" in reason and "text" in reason


def test_truncated_jpeg_fails_instead_of_being_padded(tmp_path, make_image):
    rng = np.random.default_rng(0)
    full = tmp_path / "full.jpg"
    Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(full, quality=90)
    data = full.read_bytes()
    for keep in (0.5, 0.95):
        cut = tmp_path / f"cut{keep}.jpg"
        cut.write_bytes(data[: int(len(data) * keep)])
        assert "truncated" in reason_for(cut)
    assert open_image(full).size == (160, 120)


def test_folder_named_like_an_image(tmp_path):
    (tmp_path / "x.jpg").mkdir()
    assert "folder" in reason_for(tmp_path / "x.jpg")


def test_broken_symlink_and_missing_file(tmp_path):
    link = tmp_path / "gone.png"
    os.symlink(tmp_path / "nowhere.png", link)
    assert "broken symbolic link" in reason_for(link)
    assert "no such file" in reason_for(tmp_path / "missing.png")


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims a size its (tiny) data does not have."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("side", [12_000, 100_000])
def test_decompression_bomb_header_is_refused(tmp_path, side):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_claiming(side, side))
    reason = reason_for(bomb)
    assert "too large" in reason


def test_pixel_limit_names_size_and_limit(tmp_path, make_image):
    path = make_image(tmp_path / "a.png", size=(30, 20))
    reason = reason_for(path, max_pixels=500)
    assert "30x20" in reason and "500" in reason
    assert check_image(path, max_pixels=600) == (30, 20)


# --- colour modes ---------------------------------------------------------------------


def pixel(path, **kwargs):
    img = open_image(path, **kwargs)
    return img.mode, np.asarray(img)[0, 0].tolist()


def test_cmyk_becomes_rgb(tmp_path, make_image):
    path = make_image(tmp_path / "cmyk.jpg", mode="CMYK", color=(0, 255, 255, 0), quality=95)
    mode, value = pixel(path)
    assert mode == "RGB"
    assert value[0] > 200 and value[1] < 60 and value[2] < 60  # red


def test_16_bit_grayscale_is_scaled(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((4, 5), 65535 // 2, np.uint16)).save(path)
    with Image.open(path) as raw:
        assert raw.mode.startswith("I")
    mode, value = pixel(path)
    assert mode == "L" and abs(value - 127) <= 1


def test_rgba_transparency_composited_on_white(tmp_path, make_image):
    clear = make_image(tmp_path / "clear.png", mode="RGBA", color=(0, 0, 0, 0))
    half = make_image(tmp_path / "half.png", mode="RGBA", color=(0, 0, 0, 128))
    assert pixel(clear) == ("RGB", [255, 255, 255])
    mode, value = pixel(half)
    assert mode == "RGB" and all(120 <= v <= 135 for v in value)


def test_la_becomes_l_on_white(tmp_path, make_image):
    assert pixel(make_image(tmp_path / "la.png", mode="LA", color=(0, 0))) == ("L", 255)


def test_palette_images(tmp_path):
    palette = [0, 0, 0, 255, 0, 0] + [0] * (256 * 3 - 6)
    img = Image.new("P", (4, 4), 1)
    img.putpalette(palette)
    img.save(tmp_path / "red.gif")
    img.save(tmp_path / "clear.png", transparency=1)
    assert pixel(tmp_path / "red.gif") == ("RGB", [255, 0, 0])
    assert pixel(tmp_path / "clear.png") == ("RGB", [255, 255, 255])


def test_one_bit_becomes_l(tmp_path, make_image):
    assert pixel(make_image(tmp_path / "one.bmp", mode="1", color=1)) == ("L", 255)


def test_grayscale_stays_l_and_channels_are_converted(tmp_path, make_image):
    path = make_image(tmp_path / "g.png", mode="L", color=77)
    assert open_image(path).mode == "L"
    assert load_array(path, (4, 4), channels=3).tolist()[0][0] == [77, 77, 77]
    rgb = make_image(tmp_path / "c.png", color=(255, 0, 0))
    assert load_array(rgb, (4, 4), channels=1).shape == (4, 4, 1)


# --- EXIF orientation and JPEG draft mode ---------------------------------------------


def _red_left_blue_right(width=40, height=20) -> Image.Image:
    a = np.zeros((height, width, 3), np.uint8)
    a[:, : width // 2] = (255, 0, 0)
    a[:, width // 2 :] = (0, 0, 255)
    return Image.fromarray(a)


def _with_orientation(img: Image.Image, path, orientation: int, **save_options):
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.save(path, exif=exif.tobytes(), **save_options)
    return path


def test_exif_orientation_is_applied(tmp_path):
    # Orientation 6: the stored image must be turned 90 degrees clockwise for display,
    # so the stored left half (red) ends up on top.
    path = _with_orientation(_red_left_blue_right(), tmp_path / "turned.jpg", 6, quality=95)
    img = open_image(path)
    assert img.size == (20, 40)
    a = np.asarray(img)
    assert a[5, 10, 0] > 200 and a[5, 10, 2] < 60  # top: red
    assert a[35, 10, 2] > 200 and a[35, 10, 0] < 60  # bottom: blue
    arr = load_array(path, (40, 20), channels=3)
    assert arr[5, 10, 0] > 200 and arr[35, 10, 2] > 200


def test_draft_mode_decodes_big_jpegs_small_and_keeps_orientation(tmp_path):
    big = _red_left_blue_right(1600, 800)
    path = _with_orientation(big, tmp_path / "big.jpg", 6, quality=85)
    img = open_image(path, draft_size=(100, 50))
    # Shown as 800 wide x 1600 high; decoded at 1/8 scale, never below the request.
    assert img.size == (100, 200)
    arr = load_array(path, (100, 50), channels=3)
    assert arr.shape == (100, 50, 3)
    assert arr[10, 25, 0] > 200 and arr[90, 25, 2] > 200


# --- sizes and resize modes -----------------------------------------------------------


@pytest.mark.parametrize("size", [(1, 1), (3000, 8), (8, 3000)])
@pytest.mark.parametrize("resize", ["stretch", "pad", "crop"])
def test_extreme_sizes_are_valid(tmp_path, make_image, size, resize):
    path = make_image(tmp_path / "odd.png", size=size)
    assert check_image(path) == size
    arr = load_array(path, (16, 24), channels=3, resize=resize)
    assert arr.shape == (16, 24, 3) and arr.dtype == np.uint8


def test_stretch_is_exact_size(make_image, tmp_path):
    img = open_image(make_image(tmp_path / "a.png", size=(50, 10)))
    assert to_array(img, (7, 9), 3, "stretch").shape == (7, 9, 3)


def test_pad_fits_and_uses_the_border_colour(tmp_path):
    a = np.full((10, 40, 3), (10, 200, 30), np.uint8)
    a[3:7, 15:25] = (250, 250, 250)  # a light object in the middle
    out = to_array(Image.fromarray(a), (40, 40), 3, "pad")
    assert out.shape == (40, 40, 3)
    assert out[0, 0].tolist() == [10, 200, 30]  # padding: the border colour, not black
    assert out[-1, -1].tolist() == [10, 200, 30]
    assert out[20, 20].tolist() == [250, 250, 250]  # the object stays centred


def test_crop_keeps_the_centre(tmp_path):
    a = np.zeros((10, 30, 3), np.uint8)
    a[:, :10] = (255, 0, 0)
    a[:, 10:20] = (0, 255, 0)
    a[:, 20:] = (0, 0, 255)
    out = to_array(Image.fromarray(a), (5, 5), 3, "crop")
    assert (out[..., 1] > 200).all() and (out[..., 0] < 60).all()


def test_bad_resize_mode_is_a_clear_error(tmp_path, make_image):
    img = open_image(make_image(tmp_path / "a.png"))
    with pytest.raises(
        BadInputError, match=r"unknown resize mode 'squash' \(choose from stretch, pad, crop\)"
    ):
        to_array(img, (4, 4), 3, "squash")


# --- listing --------------------------------------------------------------------------


def test_list_images_finds_odd_names_and_skips_the_rest(tmp_path, make_image):
    root = tmp_path / "in"
    make_image(root / "b photo.JPG", fmt="JPEG")
    make_image(root / "Ärger ñandú.png")
    make_image(root / "sub" / "c.PNG")
    make_image(root / "folder.jpg" / "inside.png")  # a folder named like an image
    make_image(root / ".hidden.png")
    make_image(root / "._b photo.JPG")
    (root / ".DS_Store").write_bytes(b"\0\0")
    (root / "Thumbs.db").write_bytes(b"\0")
    (root / "desktop.ini").write_text("[x]")
    make_image(root / ".git" / "a.png")
    (root / "readme.txt").write_text("hello")
    os.symlink(root / "missing.png", root / "dangling.png")

    paths, rejects = list_images(root)
    rel = [p.relative_to(root).as_posix() for p in paths]
    assert rel == sorted(rel)
    assert set(rel) == {"b photo.JPG", "Ärger ñandú.png", "sub/c.PNG", "folder.jpg/inside.png"}
    reasons = {os.path.basename(r.path): r.reason for r in rejects}
    for hidden in (".hidden.png", "._b photo.JPG", ".DS_Store", "Thumbs.db", "desktop.ini", ".git"):
        assert "hidden" in reasons[hidden] and is_skipped(reasons[hidden])
    assert "not an image file type" in reasons["readme.txt"] and is_skipped(reasons["readme.txt"])
    assert "broken symbolic link" in reasons["dangling.png"]
    assert not is_skipped(reasons["dangling.png"])
    # Every listed image really opens, names with spaces and accents included.
    for p in paths:
        check_image(p)


def test_is_hidden():
    for name in (".DS_Store", "._x.jpg", "Thumbs.db", "desktop.ini", ".env"):
        assert is_hidden(name)
    assert not is_hidden("photo.jpg")


# --- damaged TIFFs: the reject reason is the one message ---------------------------------

# A fresh process: libtiff's error handler and Python's warning filters are global.
_CHECK_TIFFS = """
import sys
from imgkit.data.images import check_image
from imgkit.data.masks import read_mask
from imgkit.errors import BadImageError
for path in sys.argv[1:]:
    try:
        (read_mask if "mask" in path else check_image)(path)
        print("ok")
    except BadImageError as e:
        print(e.reason)
"""


def _damaged_tiffs(folder) -> list:
    """LZW, deflate and JPEG-in-TIFF files with flipped bytes and cut short, and a mask."""
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    paths = []
    for compression in ("tiff_lzw", "tiff_adobe_deflate", "jpeg"):
        good = folder / f"{compression}.tif"
        image.save(good, compression=compression)
        data = bytearray(good.read_bytes())
        for i in range(200, len(data) - 200, 97):
            data[i] ^= 0x5A
        for name, damaged in (("flipped", bytes(data)), ("cut", bytes(data[: len(data) // 2]))):
            paths.append(folder / f"{compression}-{name}.tif")
            paths[-1].write_bytes(damaged)
    mask = np.zeros((16, 16), dtype=np.uint8)
    mask[4:12, 4:12] = 255
    Image.fromarray(mask).save(folder / "mask.tif", compression="tiff_lzw")
    data = bytearray((folder / "mask.tif").read_bytes())
    data[8:40] = bytes(32)  # the LZW strip
    (folder / "mask-damaged.tif").write_bytes(bytes(data))
    return [*paths, folder / "mask-damaged.tif"]


def test_damaged_tiffs_give_only_their_reject_reasons(tmp_path):
    paths = _damaged_tiffs(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", _CHECK_TIFFS, *map(str, paths)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    # Without the fix libtiff prints "ZIPDecode: Decoding error ..." and the like, and
    # Pillow warns "Corrupt EXIF data", on stderr.
    assert done.stderr == ""
    reasons = done.stdout.splitlines()
    assert len(reasons) == len(paths) and "ok" not in reasons, reasons
    assert all(r.startswith(("cannot", "not an image", "truncated", "unreadable")) for r in reasons)
