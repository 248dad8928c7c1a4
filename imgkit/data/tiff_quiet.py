"""Keep a damaged TIFF's complaints off stderr: the reject reason is the one message.

Pillow decodes compressed TIFFs through libtiff, whose error handler prints each problem
("ZIPDecode: Decoding error at scanline 0", "Using code not yet in table") straight to
file descriptor 2 from C, where no Python code can catch it; Pillow then raises its own
error, which imgkit turns into the file's reject reason. Pillow already turns libtiff's
warnings off but leaves its errors on. :func:`quiet_libtiff` sets libtiff's error
handler to none, in the copy of libtiff that Pillow itself loaded (a Pillow wheel
carries its own, which a system libtiff of the same name is not). Redirecting fd 2
around each decode is no alternative: prep decodes in threads, and it would swallow
the progress and messages of the others.

Pillow's TIFF reader also warns from Python ("Corrupt EXIF data") on damaged tags;
those warnings are ignored for the same reason.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import os
import warnings

# Damaged TIFF tags: Pillow reads on (or refuses the file) and the reason says enough.
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.TiffImagePlugin")


def _loaded_libtiff() -> str | None:
    """The path of the libtiff this process loaded (Linux), or Pillow's bundled one."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                name = line.rsplit(None, 1)[-1]
                if os.path.basename(name).startswith("libtiff"):
                    return name
    except OSError:
        pass
    import PIL

    here = os.path.dirname(PIL.__file__)
    for pattern in ("../pillow.libs/libtiff*", ".dylibs/libtiff*"):
        found = sorted(glob.glob(os.path.join(here, pattern)))
        if found:
            return found[0]
    return ctypes.util.find_library("tiff")


@functools.cache
def quiet_libtiff() -> bool:
    """Turn libtiff's stderr error messages off once; True when it was done.

    Never fails: without libtiff (or where it cannot be found) nothing changes.
    """
    from PIL import Image  # noqa: F401  loads Pillow's core, and with it libtiff

    path = _loaded_libtiff()
    if path is None:
        return False
    try:
        lib = ctypes.CDLL(path)
        lib.TIFFSetErrorHandler.argtypes = [ctypes.c_void_p]
        lib.TIFFSetErrorHandler.restype = ctypes.c_void_p
        lib.TIFFSetErrorHandler(None)
    except (OSError, AttributeError):
        return False
    return True
