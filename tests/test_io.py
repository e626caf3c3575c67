"""app.core.io on real files made in each test: every bad input the issue names, and round trips."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps

from app.core.errors import ImageError
from app.core.io import (
    SUPPORTED_SUFFIXES,
    ImageMeta,
    Photo,
    is_supported_image,
    load_image,
    save_image,
)


def _picture(h=48, w=64, seed=0) -> np.ndarray:
    """A smooth colour picture (gradients + a disc) that survives JPEG well and is not symmetric."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([x / w * 255, y / h * 255, (x + y) / (w + h) * 255], axis=2)
    img[(y - h * 0.3) ** 2 + (x - w * 0.7) ** 2 < (h * 0.15) ** 2] = (250, 20, 30)
    img += rng.normal(0, 1, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _exif_with(orientation: int | None = None, date: str | None = "2001:02:03 04:05:06") -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "CFR Test Camera"  # Make
    if orientation is not None:
        exif[0x0112] = orientation
    if date:
        exif.get_ifd(0x8769)[0x9003] = date  # DateTimeOriginal, in the Exif sub-IFD
    return exif.tobytes()


def _exif_of(path: Path) -> Image.Exif:
    with Image.open(path) as im:
        return im.getexif()


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


# ------------------------------------------------------------------------------- bad inputs


def test_missing_file_names_it(tmp_path):
    with pytest.raises(ImageError, match=r"nothere\.jpg.*does not exist"):
        load_image(tmp_path / "nothere.jpg")


def test_directory_is_not_an_image(tmp_path):
    d = tmp_path / "album.jpg"
    d.mkdir()
    with pytest.raises(ImageError, match=r"album\.jpg.*folder"):
        load_image(d)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    with pytest.raises(ImageError, match=r"empty\.jpg.*empty"):
        load_image(p)


def test_text_renamed_jpg(tmp_path):
    p = tmp_path / "notes.jpg"
    p.write_text("Dear Aunt Mary,\nthese are the photos from the wedding.\n")
    with pytest.raises(ImageError, match=r"notes\.jpg.*not an image.*text file"):
        load_image(p)


def test_random_bytes_are_not_an_image(tmp_path):
    p = tmp_path / "noise.png"
    p.write_bytes(np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    with pytest.raises(ImageError, match=r"noise\.png.*not an image"):
        load_image(p)


@pytest.mark.parametrize("suffix,fmt", [(".jpg", "JPEG"), (".png", "PNG"), (".webp", "WEBP")])
def test_truncated_file(tmp_path, suffix, fmt):
    src = Image.fromarray(_picture(200, 300))
    buf = io.BytesIO()
    src.save(buf, format=fmt, **({"quality": 90} if fmt != "PNG" else {}))
    data = buf.getvalue()
    p = tmp_path / f"cut{suffix}"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=r"cut\..*(damaged|truncated)"):
        load_image(p)


def test_truncated_16bit_png(tmp_path):
    ok, buf = cv2.imencode(".png", (np.random.default_rng(0).random((100, 80, 3)) * 65535).astype(np.uint16))
    p = tmp_path / "cut16.png"
    p.write_bytes(buf.tobytes()[: len(buf) // 2])
    with pytest.raises(ImageError, match=r"cut16\.png.*(damaged|truncated)"):
        load_image(p)


def _png_declaring(width: int, height: int) -> bytes:
    """A valid-looking PNG whose header declares width×height but carries one tiny row of data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def test_huge_declared_size_is_refused(tmp_path):
    p = tmp_path / "bomb.png"
    p.write_bytes(_png_declaring(50_000, 50_000))  # 2.5 gigapixels, in 100 bytes
    assert p.stat().st_size < 200
    with pytest.raises(ImageError, match=r"bomb\.png.*50000×50000.*limit of 200 megapixels"):
        load_image(p)


def test_bomb_limit_is_configurable(tmp_path):
    p = tmp_path / "small.png"
    Image.fromarray(_picture(100, 100)).save(p)
    assert load_image(p).rgb.shape == (100, 100, 3)
    with pytest.raises(ImageError, match="limit"):
        load_image(p, max_pixels=5_000)


def test_unsupported_format(tmp_path):
    p = tmp_path / "anim.gif"
    Image.fromarray(_picture()).convert("P").save(p)
    with pytest.raises(ImageError, match=r"anim\.gif.*GIF.*JPEG, PNG, TIFF, WebP or BMP"):
        load_image(p)
    assert not is_supported_image(p)


def test_is_supported_image():
    for s in SUPPORTED_SUFFIXES:
        assert is_supported_image(f"a/photo{s.upper()}")
    assert not is_supported_image("a/.photo.jpg.1234.part")
    assert not is_supported_image("a/readme.txt")


# ------------------------------------------------------------------------------- modes


def test_16bit_png_colour_kept_and_round_trips(tmp_path):
    rng = np.random.default_rng(2)
    rgb16 = _picture(40, 50).astype(np.uint16) * 257 + rng.integers(0, 257, (40, 50, 3)).astype(np.uint16)
    p = tmp_path / "deep.png"
    cv2.imwrite(str(p), rgb16[:, :, ::-1])
    photo = load_image(p)
    assert photo.rgb.dtype == np.uint16 and photo.meta.bit_depth == 16
    np.testing.assert_array_equal(photo.rgb, rgb16)
    out = tmp_path / "deep_out.png"
    assert save_image(out, photo) == []
    np.testing.assert_array_equal(load_image(out).rgb, rgb16)
    # JPEG cannot hold 16 bits: converted, with a stated warning
    warnings = save_image(tmp_path / "deep.jpg", photo)
    assert any("8 bits" in w and "16" in w for w in warnings)
    back = load_image(tmp_path / "deep.jpg")
    assert back.rgb.dtype == np.uint8
    assert np.abs(back.rgb.astype(int) - (rgb16 // 257)).mean() < 4


def test_16bit_png_with_icc_and_dpi_keeps_them(tmp_path):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    rgb16 = (np.random.default_rng(3).random((30, 20, 3)) * 65535).astype(np.uint16)
    photo = Photo(rgb16, None, ImageMeta(None, "PNG", "RGB", 16, icc_profile=icc, dpi=(300.0, 300.0)))
    out = tmp_path / "icc16.png"
    save_image(out, photo)
    back = load_image(out)
    np.testing.assert_array_equal(back.rgb, rgb16)
    assert back.meta.icc_profile == icc
    assert back.meta.dpi is not None and abs(back.meta.dpi[0] - 300) < 1


def test_16bit_grey_png_and_tiff(tmp_path):
    g = (np.random.default_rng(4).random((30, 40)) * 65535).astype(np.uint16)
    for suffix in (".png", ".tif"):
        p = tmp_path / f"grey16{suffix}"
        Image.fromarray(g).save(p)  # mode I;16
        photo = load_image(p)
        assert photo.meta.bit_depth == 16 and photo.meta.was_grey
        assert photo.rgb.dtype == np.uint16
        np.testing.assert_array_equal(photo.rgb[:, :, 1], g)
        out = tmp_path / f"grey16_out{suffix}"
        save_image(out, photo)
        with Image.open(out) as im:
            assert im.mode.startswith("I;16")  # saved grey, at 16 bits
        np.testing.assert_array_equal(load_image(out).rgb[:, :, 0], g)


def test_16bit_colour_tiff(tmp_path):
    rgb16 = (np.random.default_rng(5).random((20, 30, 3)) * 65535).astype(np.uint16)
    p = tmp_path / "scan16.tiff"
    cv2.imwrite(str(p), rgb16[:, :, ::-1])
    photo = load_image(p)
    assert photo.rgb.dtype == np.uint16
    np.testing.assert_array_equal(photo.rgb, rgb16)
    out = tmp_path / "scan16_out.tif"
    save_image(out, photo)
    np.testing.assert_array_equal(load_image(out).rgb, rgb16)


def test_16bit_alpha_png(tmp_path):
    rng = np.random.default_rng(6)
    bgra = (rng.random((20, 30, 4)) * 65535).astype(np.uint16)
    p = tmp_path / "alpha16.png"
    cv2.imwrite(str(p), bgra)
    photo = load_image(p)
    np.testing.assert_array_equal(photo.rgb, bgra[:, :, 2::-1])
    np.testing.assert_array_equal(photo.alpha, bgra[:, :, 3])
    out = tmp_path / "alpha16_out.png"
    save_image(out, photo)
    back = load_image(out)
    np.testing.assert_array_equal(back.alpha, bgra[:, :, 3])


def test_cmyk_with_and_without_profile(tmp_path):
    rgb = _picture(40, 60)
    cmyk = Image.fromarray(rgb).convert("CMYK")
    plain = tmp_path / "print.jpg"
    cmyk.save(plain, quality=95)
    photo = load_image(plain)
    assert photo.meta.mode == "CMYK" and photo.rgb.shape == (40, 60, 3)
    assert photo.rgb.dtype == np.uint8
    assert any("CMYK" in w and "without" in w for w in photo.meta.warnings)
    assert np.abs(photo.rgb.astype(int) - rgb).mean() < 12
    assert photo.meta.icc_profile is None  # a CMYK profile must not follow RGB pixels

    # with an ICC profile: converted through it, and the output gets sRGB
    tiff = tmp_path / "print_icc.tif"
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    cmyk.save(tiff, icc_profile=profile)  # an RGB profile on CMYK data: lcms refuses; falls back
    photo2 = load_image(tiff)
    assert photo2.rgb.shape == (40, 60, 3) and photo2.meta.warnings
    save_image(tmp_path / "print_out.jpg", photo2)
    assert load_image(tmp_path / "print_out.jpg").meta.mode == "RGB"


def test_palette_with_transparency_gives_alpha(tmp_path):
    pal = Image.fromarray(_picture(30, 40)).quantize(16)
    idx = np.asarray(pal).copy()
    transparent = int(idx[0, 0])
    pal.info["transparency"] = transparent
    p = tmp_path / "pal.png"
    pal.save(p, transparency=transparent)
    photo = load_image(p)
    assert photo.alpha is not None and photo.alpha.shape == (30, 40)
    np.testing.assert_array_equal(photo.alpha == 0, idx == transparent)
    out = tmp_path / "pal_out.png"
    save_image(out, photo)
    back = load_image(out)
    np.testing.assert_array_equal(back.alpha, photo.alpha)
    np.testing.assert_array_equal(back.rgb[photo.alpha > 0], photo.rgb[photo.alpha > 0])


def test_palette_grey_is_grey(tmp_path):
    p = tmp_path / "greypal.png"
    Image.fromarray(_picture(20, 20)).convert("L").convert("P").save(p)
    assert load_image(p).meta.was_grey


def test_rgba_and_la_keep_alpha(tmp_path):
    rgb = _picture(20, 30)
    a = np.tile(np.linspace(0, 255, 30).astype(np.uint8), (20, 1))
    p = tmp_path / "rgba.png"
    Image.fromarray(np.dstack([rgb, a]), "RGBA").save(p)
    photo = load_image(p)
    np.testing.assert_array_equal(photo.alpha, a)
    np.testing.assert_array_equal(photo.rgb, rgb)
    for suffix in (".webp", ".tif", ".png"):
        out = tmp_path / f"rgba_out{suffix}"
        save_image(out, photo)
        assert load_image(out).alpha is not None, suffix
    # JPEG has no alpha: flattened onto white, with a warning
    w = save_image(tmp_path / "rgba_out.jpg", photo)
    assert any("transparen" in x for x in w)
    flat = load_image(tmp_path / "rgba_out.jpg").rgb
    assert flat[:, 0].mean() > 240  # alpha 0 column became white

    la = tmp_path / "la.png"
    Image.fromarray(np.dstack([rgb[:, :, 0], a]), "LA").save(la)
    photo = load_image(la)
    assert photo.meta.was_grey and photo.alpha is not None
    out = tmp_path / "la_out.png"
    save_image(out, photo)
    with Image.open(out) as im:
        assert im.mode == "LA"


def test_grey_jpeg_saved_grey(tmp_path):
    p = tmp_path / "grey.jpg"
    Image.fromarray(_picture(30, 40)[:, :, 1]).save(p, quality=95)
    photo = load_image(p)
    assert photo.meta.was_grey and photo.rgb.shape == (30, 40, 3)
    assert (photo.rgb[:, :, 0] == photo.rgb[:, :, 2]).all()
    out = tmp_path / "grey_out.jpg"
    photo.rgb[5:10, 5:10] = (200, 100, 50)  # a tinted patch, as a network might produce
    save_image(out, photo)
    with Image.open(out) as im:
        assert im.mode == "L"


def test_bmp_round_trip(tmp_path):
    rgb = _picture(21, 33)
    p = tmp_path / "old.bmp"
    Image.fromarray(rgb).save(p)
    photo = load_image(p)
    np.testing.assert_array_equal(photo.rgb, rgb)
    out = tmp_path / "old_out.bmp"
    save_image(out, photo)
    np.testing.assert_array_equal(load_image(out).rgb, rgb)


# ------------------------------------------------------------------------------- EXIF, ICC


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_applied(tmp_path, orientation):
    rgb = _picture(24, 40)
    p = tmp_path / f"rot{orientation}.png"  # PNG: lossless, so the pixels compare exactly
    Image.fromarray(rgb).save(p, exif=_exif_with(orientation))
    photo = load_image(p)
    with Image.open(p) as im:
        expected = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    np.testing.assert_array_equal(photo.rgb, expected)
    if orientation >= 5:
        assert photo.rgb.shape[:2] == (40, 24)
    out = tmp_path / f"rot{orientation}_out.png"
    save_image(out, photo)
    exif = _exif_of(out)
    assert exif.get(0x0112, 1) == 1  # upright now: a viewer must not rotate it again
    assert exif.get(0x010F) == "CFR Test Camera"
    np.testing.assert_array_equal(load_image(out).rgb, expected)


def test_exif_rotated_jpeg_keeps_date_and_icc(tmp_path):
    rgb = _picture(40, 64)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    p = tmp_path / "phone.jpg"
    Image.fromarray(rgb).save(p, quality=95, exif=_exif_with(6), icc_profile=icc, dpi=(240, 240))
    photo = load_image(p)
    assert photo.rgb.shape == (64, 40, 3)  # rotated 90°
    assert photo.meta.icc_profile == icc and photo.meta.format == "JPEG"
    out = tmp_path / "phone_out.jpg"
    save_image(out, photo)
    exif = _exif_of(out)
    assert exif.get(0x0112) == 1
    assert exif.get_ifd(0x8769).get(0x9003) == "2001:02:03 04:05:06"
    back = load_image(out)
    assert back.meta.icc_profile == icc
    assert back.meta.dpi is not None and round(back.meta.dpi[0]) == 240
    # metadata can be dropped on request
    bare = tmp_path / "phone_bare.jpg"
    save_image(bare, photo, keep_metadata=False)
    assert load_image(bare).meta.exif is None and load_image(bare).meta.icc_profile is None


# ------------------------------------------------------------------------------- saving


def test_non_ascii_paths(tmp_path):
    folder = tmp_path / "Großmutter – 照片"
    folder.mkdir()
    p = folder / "Zoë_1931_фото.jpg"
    Image.fromarray(_picture()).save(p, quality=95)
    photo = load_image(p)
    out = folder / "Zoë_1931_фото_restored.png"
    save_image(out, photo)
    assert out.exists()
    assert np.abs(load_image(out).rgb.astype(int) - photo.rgb).max() == 0
    # 16-bit goes through OpenCV: non-ASCII paths must work there too
    p16 = folder / "Zoë16.png"
    cv2.imencode(".png", np.full((8, 8, 3), 40000, np.uint16))[1].tofile(str(p16))
    assert load_image(p16).rgb.max() == 40000


def test_no_overwrite_unless_asked(tmp_path):
    photo = Photo(_picture(), None, ImageMeta(None, "PNG", "RGB", 8))
    out = tmp_path / "out.png"
    save_image(out, photo)
    first = out.read_bytes()
    photo.rgb[:] = 0
    with pytest.raises(ImageError, match=r"out\.png.*already exists"):
        save_image(out, photo)
    assert out.read_bytes() == first
    save_image(out, photo, overwrite=True)
    assert load_image(out).rgb.max() == 0


def test_never_overwrites_the_original(tmp_path):
    p = tmp_path / "original.jpg"
    Image.fromarray(_picture()).save(p)
    before = p.read_bytes()
    photo = load_image(p)
    for overwrite in (False, True):
        with pytest.raises(ImageError, match=r"original"):
            save_image(p, photo, overwrite=overwrite)
        # also through another spelling of the same path
        with pytest.raises(ImageError, match=r"original"):
            save_image(tmp_path / "." / "original.jpg", photo, overwrite=overwrite)
    assert p.read_bytes() == before


def test_unknown_output_suffix(tmp_path):
    with pytest.raises(ImageError, match=r"\.gif.*\.jpg, \.png"):
        save_image(tmp_path / "x.gif", _picture())


def test_read_only_output_folder(tmp_path):
    photo = Photo(_picture(), None, ImageMeta(None, "PNG", "RGB", 8))
    if _is_root():
        # root writes through chmod 000: a folder that cannot exist (its parent is a file) instead
        blocker = tmp_path / "file_not_folder"
        blocker.write_text("x")
        target = blocker / "sub" / "out.png"
        with pytest.raises(ImageError, match=r"out\.png.*folder.*cannot be created"):
            save_image(target, photo)
        # and a real read-only filesystem, if the machine has one
        ro = Path("/proc/self")
        with pytest.raises(ImageError, match=r"Cannot write"):
            save_image(ro / "cfr_out.png", photo)
    else:
        folder = tmp_path / "locked"
        folder.mkdir()
        folder.chmod(0o555)
        try:
            with pytest.raises(ImageError, match=r"out\.png.*not writable"):
                save_image(folder / "out.png", photo)
        finally:
            folder.chmod(0o755)
    assert not list(tmp_path.rglob("*.part"))


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    # an array the encoder cannot take fails before anything appears under the real name
    with pytest.raises(ImageError):
        save_image(tmp_path / "bad.png", np.zeros((4, 4, 5), np.uint8))
    assert list(tmp_path.iterdir()) == []
    save_image(tmp_path / "good.jpg", _picture())
    assert [p.name for p in tmp_path.iterdir()] == ["good.jpg"]  # no temporary file left


def test_creates_missing_output_folders(tmp_path):
    out = tmp_path / "a" / "b" / "c.jpg"
    save_image(out, _picture())
    assert out.exists()


def test_jpeg_quality_changes_size(tmp_path):
    rgb = (np.random.default_rng(7).random((64, 64, 3)) * 255).astype(np.uint8)
    save_image(tmp_path / "q95.jpg", rgb, quality=95)
    save_image(tmp_path / "q40.jpg", rgb, quality=40)
    assert (tmp_path / "q40.jpg").stat().st_size < 0.7 * (tmp_path / "q95.jpg").stat().st_size


def test_array_inputs(tmp_path):
    rgb = _picture()
    save_image(tmp_path / "f.png", rgb.astype(np.float32) / 255.0)
    np.testing.assert_array_equal(load_image(tmp_path / "f.png").rgb, rgb)
    save_image(tmp_path / "g.png", rgb[:, :, 0])
    np.testing.assert_array_equal(load_image(tmp_path / "g.png").rgb[:, :, 2], rgb[:, :, 0])


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".tif", ".webp", ".bmp"])
def test_round_trip_every_format(tmp_path, suffix):
    rgb = _picture(50, 70)
    p = tmp_path / f"in{suffix}"
    save_image(p, rgb, quality=98)
    photo = load_image(p)
    assert photo.rgb.shape == (50, 70, 3) and photo.rgb.dtype == np.uint8
    assert photo.rgb.flags.writeable and photo.rgb.flags.c_contiguous
    err = np.abs(photo.rgb.astype(int) - rgb).mean()
    assert err < (3 if suffix in (".jpg", ".webp") else 1e-9), err
    out = tmp_path / f"out{suffix}"
    save_image(out, photo)
    assert load_image(out).meta.format == photo.meta.format


def test_real_photo_loads(shared_data):
    photos = sorted((shared_data / "photos" / "real-old").glob("*.jpg"))[:3]
    assert photos
    for p in photos:
        photo = load_image(p)
        assert photo.rgb.ndim == 3 and photo.rgb.shape[2] == 3 and photo.rgb.dtype == np.uint8


def test_jpeg_pixels_match_pillow(tmp_path):
    # the fast OpenCV path for JPEG must give exactly Pillow's pixels (same libjpeg-turbo)
    for mode in ("RGB", "L"):
        p = tmp_path / f"px_{mode}.jpg"
        Image.fromarray(_picture(37, 53)).convert(mode).save(p, quality=88)
        with Image.open(p) as im:
            expected = np.asarray(im.convert("RGB"))
        np.testing.assert_array_equal(load_image(p).rgb, expected)
    # a JPEG with bytes after its end marker (padding) still loads
    p = tmp_path / "padded.jpg"
    Image.fromarray(_picture()).save(p)
    p.write_bytes(p.read_bytes() + b"\x00" * 100)
    assert load_image(p).rgb.shape == (48, 64, 3)
