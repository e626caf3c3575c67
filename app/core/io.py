"""Image files in and out: the one image loader and writer of the project.

``load_image`` gives a ``Photo``: RGB pixels (uint8, or uint16 for 16-bit PNG/TIFF) with the EXIF
orientation already applied, the alpha channel if there is one, and the metadata needed to write
the result back the way it came (EXIF, ICC profile, bit depth, grey or colour, DPI).
``save_image`` writes atomically (a temporary file in the same folder, fsync, rename) and never
replaces an existing file unless asked, nor ever the photo it was loaded from.

Every failure is an ``ImageError`` whose message names the file and says what is wrong in plain
words; the CLI and the GUI show it as it is.
"""

from __future__ import annotations

import io
import os
import secrets
import struct
import warnings as _warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import cv2
import numpy as np
from PIL import Image, ImageCms, UnidentifiedImageError

from app.core.errors import ImageError

# Pillow's own bomb check is a process-wide global that errors at 2× its limit (~179 MP); we do our
# own check with a per-call limit instead (below), so that a caller can raise or lower it.
Image.MAX_IMAGE_PIXELS = None

DEFAULT_MAX_PIXELS = 200_000_000

# suffix → the Pillow format written for it
_SUFFIX_FORMAT = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".jpe": "JPEG",
    ".png": "PNG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
    ".bmp": "BMP",
}
SUPPORTED_SUFFIXES: tuple[str, ...] = tuple(_SUFFIX_FORMAT)
# formats we read (MPO is what phones call a JPEG with a second, preview frame)
_READ_FORMATS = {"JPEG", "MPO", "PNG", "TIFF", "WEBP", "BMP"}
_FORMAT_NAMES = "JPEG, PNG, TIFF, WebP or BMP"
_ALPHA_FORMATS = {"PNG", "TIFF", "WEBP"}
_16BIT_FORMATS = {"PNG", "TIFF"}

_ORIENTATION_TAG = 0x0112


@dataclass
class ImageMeta:
    path: Optional[Path]
    format: str  # 'JPEG', 'PNG', 'TIFF', 'WEBP', 'BMP'
    mode: str  # the original Pillow mode ('RGB', 'L', 'I;16', 'CMYK', 'P', …)
    bit_depth: int  # 8 or 16 (per channel)
    exif: Optional[bytes] = None  # orientation reset to 1: the pixels are already upright
    icc_profile: Optional[bytes] = None
    was_grey: bool = False
    dpi: Optional[tuple[float, float]] = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class Photo:
    rgb: np.ndarray  # H×W×3, uint8 or uint16, upright
    alpha: Optional[np.ndarray]  # H×W, same dtype, or None
    meta: ImageMeta

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])


def is_supported_image(path: Union[str, Path]) -> bool:
    """True for a file name with a suffix we read (it says nothing about the contents)."""
    p = Path(path)
    return p.suffix.lower() in _SUFFIX_FORMAT and not p.name.startswith(".")


# ----------------------------------------------------------------------------------------- load


def load_image(path: Union[str, Path], max_pixels: int = DEFAULT_MAX_PIXELS) -> Photo:
    """Read an image file; raise ImageError naming the file and the problem."""
    path = Path(path)
    name = f"'{path}'"
    if not path.exists():
        raise ImageError(f"{name} does not exist.")
    if path.is_dir():
        raise ImageError(f"{name} is a folder, not an image file.")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImageError(f"{name} cannot be read: {exc.strerror or exc}.") from exc
    if size == 0:
        raise ImageError(f"{name} is empty (0 bytes): it is not an image.")

    try:
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore")  # Pillow's EXIF/TIFF-tag chatter is not for the user
            im = Image.open(path)
    except PermissionError as exc:
        raise ImageError(f"{name} cannot be read: permission denied.") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(_not_an_image_message(path)) from exc
    except (OSError, SyntaxError, ValueError, struct.error, EOFError) as exc:
        raise ImageError(f"{name} is damaged and cannot be read ({_reason(exc)}).") from exc

    with im:
        fmt = im.format or "?"
        if fmt not in _READ_FORMATS:
            raise ImageError(
                f"{name} is a {fmt} image; CFR Studio reads {_FORMAT_NAMES} files. "
                "Convert it to one of those first."
            )
        fmt = "JPEG" if fmt == "MPO" else fmt
        w, h = im.size
        if w <= 0 or h <= 0:
            raise ImageError(f"{name} has no pixels ({w}×{h}).")
        if w * h > max_pixels:
            raise ImageError(
                f"{name} is {w}×{h} pixels ({w * h / 1e6:.0f} megapixels), more than the limit "
                f"of {max_pixels / 1e6:.0f} megapixels. It may be a damaged or malicious file; "
                "if it is a real photo, scale it down first."
            )
        meta = ImageMeta(path=path, format=fmt, mode=im.mode, bit_depth=8)
        meta.icc_profile = im.info.get("icc_profile") or None
        meta.dpi = _dpi(im.info.get("dpi"))
        orientation, meta.exif = _read_exif(im, meta.warnings)
        if getattr(im, "n_frames", 1) > 1 and fmt == "TIFF":
            meta.warnings.append(f"{name} has {im.n_frames} pages; only the first is used.")
        try:
            if _is_16bit(path, im, fmt):
                rgb, alpha, grey = _pixels_16bit(path)
                meta.bit_depth = 16
            elif fmt == "JPEG" and im.mode in ("RGB", "L") and (rgb := _jpeg_fast(path)) is not None:
                alpha, grey = None, im.mode == "L"
            else:
                rgb, alpha, grey = _pixels_pillow(im, meta)
        except ImageError:
            raise
        except MemoryError as exc:
            raise ImageError(f"{name} is too large to load into memory ({w}×{h}).") from exc
        except (OSError, SyntaxError, ValueError, struct.error, EOFError, zlib.error) as exc:
            raise ImageError(
                f"{name} is damaged or incomplete (truncated?) and cannot be read ({_reason(exc)})."
            ) from exc
    meta.was_grey = meta.was_grey or grey
    rgb = _orient(rgb, orientation)
    if alpha is not None:
        alpha = _orient(alpha, orientation)
    return Photo(rgb=rgb, alpha=alpha, meta=meta)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text if text else type(exc).__name__


def _not_an_image_message(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        head = b""
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        kind = "it looks like a text file"
    else:
        kind = "its contents are not a picture format CFR Studio knows"
    return (
        f"'{path}' is not an image ({kind}). CFR Studio reads {_FORMAT_NAMES} files; "
        "if this is one, it is damaged."
    )


def _dpi(value) -> Optional[tuple[float, float]]:
    try:
        x, y = value
        return (float(x), float(y))
    except (TypeError, ValueError):
        return None


def _read_exif(im: Image.Image, warnings: list[str]) -> tuple[int, Optional[bytes]]:
    """The EXIF orientation, and the EXIF block to carry to the output with orientation = 1."""
    try:
        orientation = int(im.getexif().get(_ORIENTATION_TAG, 1))
    except Exception:  # a damaged EXIF block must not stop the photo from loading
        orientation = 1
    if orientation not in range(1, 9):
        orientation = 1
    raw = im.info.get("exif")  # TIFF keeps its tags in the IFD itself: nothing separate to carry
    if not raw:
        return orientation, None
    if orientation == 1:
        return orientation, bytes(raw)
    try:
        exif = Image.Exif()
        exif.load(raw)
        exif[_ORIENTATION_TAG] = 1
        return orientation, exif.tobytes()
    except Exception:
        warnings.append("The photo's EXIF data is damaged; it will not be copied to the output.")
        return orientation, None


def _is_16bit(path: Path, im: Image.Image, fmt: str) -> bool:
    if fmt == "PNG":
        with open(path, "rb") as f:
            head = f.read(26)
        return len(head) == 26 and head[24] == 16
    if fmt == "TIFF":
        bits = im.tag_v2.get(258, 8) if hasattr(im, "tag_v2") else 8
        bits = max(bits) if isinstance(bits, tuple) else int(bits)
        fmt_code = im.tag_v2.get(339, 1) if hasattr(im, "tag_v2") else 1  # SampleFormat: 1 = uint
        fmt_code = fmt_code[0] if isinstance(fmt_code, tuple) else fmt_code
        return bits == 16 and fmt_code == 1
    return False


def _pixels_16bit(path: Path) -> tuple[np.ndarray, Optional[np.ndarray], bool]:
    # Pillow has no 16-bit RGB mode (it would silently drop to 8 bits): OpenCV decodes these.
    # np.fromfile + imdecode rather than imread, which cannot open non-ASCII paths on Windows.
    data = np.fromfile(str(path), dtype=np.uint8)
    arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ImageError(f"'{path}' is damaged or incomplete (truncated?) and cannot be read.")
    if arr.dtype != np.uint16:
        arr = arr.astype(np.uint16) * 257 if arr.dtype == np.uint8 else arr.astype(np.uint16)
    if arr.ndim == 2:
        return np.repeat(arr[:, :, None], 3, axis=2), None, True
    if arr.shape[2] == 4:
        return np.ascontiguousarray(arr[:, :, 2::-1]), np.ascontiguousarray(arr[:, :, 3]), False
    if arr.shape[2] == 2:  # grey + alpha
        return np.repeat(arr[:, :, :1], 3, axis=2), np.ascontiguousarray(arr[:, :, 1]), True
    return np.ascontiguousarray(arr[:, :, 2::-1]), None, False


def _jpeg_fast(path: Path) -> Optional[np.ndarray]:
    """Decode a complete RGB or grey JPEG straight to RGB with OpenCV: the same libjpeg-turbo
    pixels as Pillow, without Pillow's two copies (2.4× faster on a 12 MP photo). None → use
    Pillow: OpenCV pads a truncated JPEG with grey instead of failing, so only a file that ends
    with the end-of-image marker is taken here."""
    data = np.fromfile(str(path), dtype=np.uint8)
    tail = data[-64:].tobytes().rstrip(b"\x00\r\n ")
    if not tail.endswith(b"\xff\xd9"):
        return None
    flags = cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION  # we apply the orientation
    arr = cv2.imdecode(data, flags)
    if arr is None or arr.ndim != 3 or arr.shape[2] != 3:
        return None
    return arr


def _pixels_pillow(im: Image.Image, meta: ImageMeta) -> tuple[np.ndarray, Optional[np.ndarray], bool]:
    im.load()
    mode = im.mode
    name = f"'{meta.path}'"
    if mode == "1":
        mode, im = "L", im.convert("L")
    if mode == "P" or mode == "PA":
        grey = _palette_is_grey(im)
        has_alpha = mode == "PA" or "transparency" in im.info
        im = im.convert("RGBA" if has_alpha else "RGB")
        mode = im.mode
        if mode == "RGB":
            return np.array(im), None, grey
        arr = np.asarray(im)
        return np.ascontiguousarray(arr[:, :, :3]), np.ascontiguousarray(arr[:, :, 3]), grey
    if mode in ("L", "LA", "La"):
        if mode == "La":
            im = im.convert("LA")
        arr = np.asarray(im)
        if arr.ndim == 2:
            return np.repeat(arr[:, :, None], 3, axis=2), None, True
        return np.repeat(arr[:, :, :1], 3, axis=2), np.ascontiguousarray(arr[:, :, 1]), True
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        arr = np.asarray(im).astype(np.uint16)
        meta.bit_depth = 16
        return np.repeat(arr[:, :, None], 3, axis=2), None, True
    if mode in ("I", "F"):
        arr = np.asarray(im)
        if mode == "F" and arr.size and float(np.nanmax(arr)) <= 1.0:
            arr = arr * 65535.0  # float images are usually [0, 1]
        arr = np.clip(np.nan_to_num(arr), 0, 65535).round().astype(np.uint16)
        meta.bit_depth = 16
        meta.warnings.append(
            f"{name} has {'32-bit float' if mode == 'F' else '32-bit integer'} pixels; "
            "they were converted to 16 bits per channel."
        )
        return np.repeat(arr[:, :, None], 3, axis=2), None, True
    if mode == "CMYK":
        return _cmyk_to_rgb(im, meta), None, False
    if mode in ("RGBA", "RGBa"):
        arr = np.asarray(im.convert("RGBA") if mode == "RGBa" else im)
        return np.ascontiguousarray(arr[:, :, :3]), np.ascontiguousarray(arr[:, :, 3]), False
    if mode != "RGB":
        try:
            im = im.convert("RGB")  # RGBX, YCbCr, …
        except (ValueError, OSError) as exc:
            raise ImageError(
                f"{name} uses the colour mode '{mode}', which CFR Studio cannot convert to RGB."
            ) from exc
    return np.array(im), None, False


def _palette_is_grey(im: Image.Image) -> bool:
    pal = im.getpalette()
    if not pal:
        return False
    colours = np.asarray(pal, dtype=np.int32).reshape(-1, 3)
    used = np.unique(np.asarray(im))
    used = used[used < len(colours)]
    c = colours[used]
    return bool(len(c)) and bool(np.all(c[:, 0] == c[:, 1]) and np.all(c[:, 1] == c[:, 2]))


def _srgb_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _cmyk_to_rgb(im: Image.Image, meta: ImageMeta) -> np.ndarray:
    name = f"'{meta.path}'"
    if meta.icc_profile:
        try:
            src = ImageCms.ImageCmsProfile(io.BytesIO(meta.icc_profile))
            dst = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
            rgb = ImageCms.profileToProfile(im, src, dst, outputMode="RGB")
            meta.icc_profile = _srgb_profile()  # the pixels are sRGB now, not the print profile
            meta.warnings.append(
                f"{name} is a CMYK (print) image; it was converted to RGB with its colour profile."
            )
            return np.array(rgb)
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass
    meta.icc_profile = None
    meta.warnings.append(
        f"{name} is a CMYK (print) image without a usable colour profile; it was converted to RGB "
        "with a plain formula, so colours may be slightly off."
    )
    return np.array(im.convert("RGB"))


def _orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1–8) to an H×W(×C) array: the result is upright."""
    if orientation == 2:
        arr = arr[:, ::-1]
    elif orientation == 3:
        arr = arr[::-1, ::-1]
    elif orientation == 4:
        arr = arr[::-1]
    elif orientation == 5:
        arr = arr.swapaxes(0, 1)
    elif orientation == 6:
        arr = np.rot90(arr, -1)
    elif orientation == 7:
        arr = np.rot90(arr, 2).swapaxes(0, 1)
    elif orientation == 8:
        arr = np.rot90(arr, 1)
    else:
        return np.ascontiguousarray(arr)
    return np.ascontiguousarray(arr)


# ----------------------------------------------------------------------------------------- save


def save_image(
    path: Union[str, Path],
    photo_or_rgb: Union[Photo, np.ndarray],
    *,
    like: Optional[ImageMeta] = None,
    quality: int = 95,
    keep_16bit: bool = True,
    keep_metadata: bool = True,
    overwrite: bool = False,
) -> list[str]:
    """Write an image atomically; the format comes from the suffix. Returns warnings (plain text).

    ``photo_or_rgb``: a Photo, or an H×W×3 (or ×4 with alpha, or H×W grey) uint8/uint16/float[0,1]
    array. ``like``: the metadata of the photo this one came from (EXIF, ICC, grey, bit depth);
    a Photo brings its own. An existing file is replaced only with ``overwrite=True``, and the file
    ``like`` was loaded from never.
    """
    path = Path(path)
    name = f"'{path}'"
    warnings: list[str] = []
    fmt = _SUFFIX_FORMAT.get(path.suffix.lower())
    if fmt is None:
        raise ImageError(
            f"Cannot write {name}: '{path.suffix or '(no suffix)'}' is not a format CFR Studio "
            f"writes; use .jpg, .png, .tif, .webp or .bmp."
        )
    if isinstance(photo_or_rgb, Photo):
        rgb, alpha = photo_or_rgb.rgb, photo_or_rgb.alpha
        like = like if like is not None else photo_or_rgb.meta
    else:
        rgb, alpha = _split_array(np.asarray(photo_or_rgb), name)

    if like is not None and like.path is not None and _same_file(path, Path(like.path)):
        raise ImageError(
            f"Refusing to write {name}: it is the original photo, which is never overwritten. "
            "Choose another output name."
        )
    if path.is_dir():
        raise ImageError(f"Cannot write {name}: a folder of that name exists.")
    if path.exists() and not overwrite:
        raise ImageError(f"{name} already exists and was not overwritten (choose another name).")

    rgb, alpha = _to_dtype(rgb), (None if alpha is None else _to_dtype(alpha))
    if rgb.dtype == np.uint16 and (fmt not in _16BIT_FORMATS or not keep_16bit):
        why = f"{fmt} files cannot store 16 bits" if fmt not in _16BIT_FORMATS else "as asked"
        warnings.append(f"{name} was saved at 8 bits per channel ({why}); the original had 16.")
        rgb = _to_8bit(rgb)
        alpha = None if alpha is None else _to_8bit(alpha)
    if alpha is not None and alpha.dtype != rgb.dtype:
        alpha = _to_8bit(alpha) if rgb.dtype == np.uint8 else alpha.astype(np.uint16) * 257
    if alpha is not None and fmt not in _ALPHA_FORMATS:
        warnings.append(
            f"{name}: {fmt} files have no transparency; transparent areas were filled with white."
        )
        rgb = _flatten_on_white(rgb, alpha)
        alpha = None
    grey = bool(like is not None and like.was_grey)

    exif = icc = dpi = None
    if keep_metadata and like is not None:
        exif = _exif_upright(like.exif)
        icc = like.icc_profile
        dpi = like.dpi

    if rgb.dtype == np.uint16 and not grey:
        data = _encode_16bit_colour(rgb, alpha, fmt, exif, icc, dpi, warnings, name)
    else:
        data = _encode_pillow(rgb, alpha, grey, fmt, quality, exif, icc, dpi)
    _write_atomic(path, data, overwrite)
    return warnings


def _split_array(arr: np.ndarray, name: str) -> tuple[np.ndarray, Optional[np.ndarray]]:
    if arr.ndim == 2:
        return np.repeat(arr[:, :, None], 3, axis=2), None
    if arr.ndim == 3 and arr.shape[2] == 3:
        return arr, None
    if arr.ndim == 3 and arr.shape[2] == 4:
        return arr[:, :, :3], arr[:, :, 3]
    raise ImageError(f"Cannot write {name}: pixels of shape {arr.shape} are not an RGB image.")


def _to_dtype(arr: np.ndarray) -> np.ndarray:
    if arr.dtype in (np.uint8, np.uint16):
        return arr
    if np.issubdtype(arr.dtype, np.floating):  # float [0, 1]
        return (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.clip(arr, 0, 255).astype(np.uint8)


def _to_8bit(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    return ((arr.astype(np.uint32) + 128) // 257).astype(np.uint8)


def _flatten_on_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    peak = 65535.0 if rgb.dtype == np.uint16 else 255.0
    a = alpha.astype(np.float32)[:, :, None] / peak
    out = rgb.astype(np.float32) * a + peak * (1.0 - a)
    return (out + 0.5).astype(rgb.dtype)


def _luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma (the grey Pillow's convert('L') makes), at the array's own bit depth."""
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def _exif_upright(exif: Optional[bytes]) -> Optional[bytes]:
    if not exif:
        return None
    try:
        parsed = Image.Exif()
        parsed.load(exif)
        if parsed.get(_ORIENTATION_TAG, 1) != 1:
            parsed[_ORIENTATION_TAG] = 1
            return parsed.tobytes()
    except Exception:
        return None
    return exif


def _encode_pillow(rgb, alpha, grey, fmt, quality, exif, icc, dpi) -> bytes:
    if grey:
        y = _luma(rgb)
        if y.dtype == np.uint16:
            im = Image.fromarray(y)  # 'I;16' (PNG/TIFF only: other formats got 8 bits above)
            if alpha is not None:  # Pillow has no 16-bit grey+alpha mode: keep the alpha in 16-bit RGBA
                return _encode_16bit_colour(
                    np.repeat(y[:, :, None], 3, axis=2), alpha, fmt, exif, icc, dpi, [], ""
                )
        elif alpha is not None:
            im = Image.fromarray(np.dstack([y, alpha]), "LA")
        else:
            im = Image.fromarray(y, "L")
    elif alpha is not None:
        im = Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    else:
        im = Image.fromarray(np.ascontiguousarray(rgb), "RGB")
    if fmt == "WEBP" and im.mode == "LA":
        im = im.convert("RGBA")  # WebP stores colour only
    if fmt == "WEBP" and im.mode == "L":
        im = im.convert("RGB")
    kwargs: dict = {}
    if exif and fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
        kwargs["exif"] = exif
    if icc and fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
        kwargs["icc_profile"] = icc
    if dpi and fmt in ("JPEG", "PNG", "TIFF", "BMP"):
        kwargs["dpi"] = dpi
    if fmt == "JPEG":
        # 4:2:0 chroma, as cameras write it: 4:4:4 costs 1.5× the time and 25 % more bytes for
        # colour detail old photos do not have; kept for quality ≥ 98 where the user asks for it
        kwargs.update(quality=int(quality), subsampling=0 if quality >= 98 else 2)
    elif fmt == "WEBP":
        kwargs.update(quality=int(quality))
    elif fmt == "PNG":
        kwargs.update(compress_level=3)  # level 6 triples the time for ~5 % smaller files
    elif fmt == "TIFF":
        kwargs.update(compression="tiff_lzw")
    buf = io.BytesIO()
    try:
        im.save(buf, format=fmt, **kwargs)
    except (OSError, ValueError, TypeError, KeyError):
        if not ("exif" in kwargs or "icc_profile" in kwargs):
            raise
        # a damaged EXIF/ICC block must not cost the user the picture: write without it
        buf = io.BytesIO()
        kwargs.pop("exif", None)
        kwargs.pop("icc_profile", None)
        im.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _encode_16bit_colour(rgb, alpha, fmt, exif, icc, dpi, warnings, name) -> bytes:
    # Pillow cannot write 16-bit colour; OpenCV can (BGR order), and for PNG we add the metadata
    # chunks ourselves.
    bgr = rgb[:, :, ::-1]
    if alpha is not None:
        bgr = np.dstack([bgr, alpha])
    ext = ".png" if fmt == "PNG" else ".tiff"
    params = [cv2.IMWRITE_PNG_COMPRESSION, 3] if fmt == "PNG" else []
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(bgr), params)
    if not ok:
        raise ImageError(f"Cannot write {name}: the 16-bit {fmt} encoder failed.")
    data = buf.tobytes()
    if fmt == "PNG":
        chunks = []
        if icc:
            chunks.append((b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc)))
        if dpi:
            ppm = [max(1, int(round(d / 0.0254))) for d in dpi]
            chunks.append((b"pHYs", struct.pack(">IIB", ppm[0], ppm[1], 1)))
        if exif:
            chunks.append((b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif))
        data = _png_insert_chunks(data, chunks)
    elif exif or icc:
        warnings.append(
            f"{name}: EXIF data and colour profile are not written into 16-bit colour TIFF files."
        )
    return data


def _png_insert_chunks(png: bytes, chunks: list[tuple[bytes, bytes]]) -> bytes:
    """Insert chunks right after IHDR (iCCP and pHYs must come before the image data)."""
    ihdr_end = 8 + 4 + 4 + 13 + 4  # signature, length, type, IHDR data, CRC
    extra = b"".join(
        struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        for kind, body in chunks
    )
    return png[:ihdr_end] + extra + png[ihdr_end:]


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except OSError:
        return False


def write_atomic(path: Union[str, Path], data: bytes, overwrite: bool = False) -> None:
    """Write bytes atomically (used for images here and for the batch manifest): see below."""
    _write_atomic(Path(path), data, overwrite)


def _write_atomic(path: Path, data: bytes, overwrite: bool) -> None:
    """Write to a temporary file beside ``path``, fsync, then rename: a failure or crash never
    leaves a half-written output under the real name."""
    name = f"'{path}'"
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImageError(
            f"Cannot write {name}: the folder '{folder}' cannot be created "
            f"({exc.strerror or exc})."
        ) from exc
    tmp = folder / f".{path.name}.{secrets.token_hex(4)}.part"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as exc:
        raise ImageError(
            f"Cannot write {name}: the folder '{folder}' is not writable "
            f"({exc.strerror or exc})."
        ) from exc
    try:
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise ImageError(f"Cannot write {name}: {exc.strerror or exc} (disk full?).") from exc
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if the name exists: no race with another writer
            except FileExistsError as exc:
                raise ImageError(f"{name} already exists and was not overwritten.") from exc
            except OSError:
                # a filesystem without hard links (FAT, some network shares)
                if path.exists():
                    raise ImageError(f"{name} already exists and was not overwritten.")
                os.replace(tmp, path)
    except OSError as exc:
        raise ImageError(f"Cannot write {name}: {exc.strerror or exc}.") from exc
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass
    _fsync_folder(folder)


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
