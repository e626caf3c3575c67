"""Face alignment: five landmarks → a 256×256 crop on the template, and back again.

This is the one aligner of the project. The app, the training data pack and the tests all call
these functions, so that a crop made at training time and one made at run time are identical.

Conventions (DESIGN.md §2): landmarks are image pixels (x, y), ordered eye on the image's left,
eye on the image's right, nose tip, mouth corner left, mouth corner right. Four points (eyes, nose,
mouth centre) are also accepted: the detector alone gives the mouth centre, which maps to the
midpoint of the template's mouth corners.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

CROP_SIZE = 256

# The FFHQ-style 5-point template at half scale (x, y) for a 256×256 crop.
TEMPLATE_256 = np.array(
    [
        (96.49, 119.97),  # eye, image left
        (159.45, 120.10),  # eye, image right
        (128.32, 157.01),  # nose tip
        (100.63, 185.71),  # mouth corner, image left
        (156.54, 185.58),  # mouth corner, image right
    ],
    dtype=np.float64,
)
MOUTH_CENTRE_256 = np.array((128.58, 185.65), dtype=np.float64)


def template(size: int = CROP_SIZE, points: int = 5) -> np.ndarray:
    """The template scaled to a ``size``×``size`` crop; ``points`` = 5, or 4 (mouth centre last)."""
    if points == 5:
        pts = TEMPLATE_256
    elif points == 4:
        pts = np.vstack([TEMPLATE_256[:3], MOUTH_CENTRE_256])
    else:
        raise ValueError(f"template has 4 or 5 points, not {points}")
    return pts * (size / CROP_SIZE)


@dataclass
class Crop:
    """An aligned face: the crop and the 2×3 similarity matrix that maps image → crop pixels."""

    image: np.ndarray  # size×size×C, same dtype as the photo it came from
    matrix: np.ndarray  # 2×3 float64, image coordinates → crop coordinates

    @property
    def size(self) -> int:
        return int(self.image.shape[0])

    @property
    def scale(self) -> float:
        """Crop pixels per image pixel (> 1 means the face was enlarged)."""
        return similarity_scale(self.matrix)


def estimate_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (rotation, uniform scale, translation) taking ``src``
    points onto ``dst`` points (Umeyama's closed form, reflections excluded). Returns 2×3."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"need matching N×2 point sets (N ≥ 2), got {src.shape} and {dst.shape}")
    if not np.all(np.isfinite(src)):
        raise ValueError("landmarks contain NaN or infinity")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    var_s = (s**2).sum() / len(src)
    if var_s < 1e-12:
        raise ValueError("landmarks are all at one point")
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    rot = u @ sign @ vt
    scale = float(np.trace(np.diag(sig) @ sign) / var_s)
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def similarity_scale(matrix: np.ndarray) -> float:
    return float(np.sqrt(abs(np.linalg.det(np.asarray(matrix)[:, :2]))))


def invert(matrix: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))


def alignment_matrix(landmarks: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """The image → crop matrix for a face's landmarks (5 points, or 4 with the mouth centre)."""
    pts = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    return estimate_similarity(pts, template(size, points=len(pts)))


def warp_affine(
    src: np.ndarray,
    matrix: np.ndarray,
    out_size: tuple[int, int],
    border: int = cv2.BORDER_REFLECT_101,
) -> np.ndarray:
    """``cv2.warpAffine`` (``matrix`` maps src → dst, ``out_size`` is (w, h)) that does not alias
    when it shrinks: below a 1:1 scale the source is first reduced with area averaging, and only
    the region the output needs is touched, so a small crop from a 50 MP photo stays cheap."""
    matrix = np.asarray(matrix, dtype=np.float64)
    w, h = out_size
    # the source region that the output sees, with room for the cubic kernel
    corners = np.array([[0, 0], [w, 0], [0, h], [w, h]], dtype=np.float64)
    src_corners = cv2.transform(corners[None], invert(matrix))[0]
    x0, y0 = np.floor(src_corners.min(0)).astype(int) - 4
    x1, y1 = np.ceil(src_corners.max(0)).astype(int) + 4
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, src.shape[1]), min(y1, src.shape[0])
    if x1 - x0 < 2 or y1 - y0 < 2:  # entirely outside the source: take it all and let border fill
        x0, y0, x1, y1 = 0, 0, src.shape[1], src.shape[0]
    region = src[y0:y1, x0:x1]
    m = matrix.copy()
    m[:, 2] += m[:, :2] @ np.array([x0, y0], dtype=np.float64)  # shift into region coordinates

    scale = similarity_scale(m)
    if scale < 0.999:
        rw = max(1, int(round(region.shape[1] * scale)))
        rh = max(1, int(round(region.shape[0] * scale)))
        # exact 2× halvings first: OpenCV averages 2×2 blocks ~7× faster per pixel than it does
        # an arbitrary area factor (a 256² crop of a 550 px face in a 12 MP photo: ~5 → ~1.5 ms).
        # Each maps pixel centres as p' = (p + 0.5) / 2 - 0.5 (an odd last row/column is dropped,
        # inside the margin), so ``span`` is the source extent the reduced region stands for.
        span = np.array([x1 - x0, y1 - y0], dtype=np.float64)
        while region.shape[1] >= 2 * rw and region.shape[0] >= 2 * rh and min(region.shape[:2]) >= 4:
            h2, w2 = region.shape[0] // 2, region.shape[1] // 2
            span = span / region.shape[1::-1] * (2 * w2, 2 * h2)
            region = cv2.resize(region[: 2 * h2, : 2 * w2], (w2, h2), interpolation=cv2.INTER_AREA)
        if region.shape[1] != rw or region.shape[0] != rh:
            region = cv2.resize(region, (rw, rh), interpolation=cv2.INTER_AREA)
        f = np.array([region.shape[1], region.shape[0]], dtype=np.float64) / span
        m[:, :2] = m[:, :2] @ np.linalg.inv(np.diag(f))
        # resize maps pixel centres: p' = (p + 0.5) * f - 0.5, so compensate the half-pixel shift
        m[:, 2] -= m[:, :2] @ ((f - 1) * 0.5)
    return cv2.warpAffine(region, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=border)


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int = CROP_SIZE) -> Crop:
    """Cut one face out of ``image`` onto the template."""
    matrix = alignment_matrix(landmarks, size)
    crop = warp_affine(image, matrix, (size, size))
    return Crop(image=_clip_like(crop, image.dtype), matrix=matrix)


def face_mask(size: int = CROP_SIZE, feather: float = 0.1) -> np.ndarray:
    """Paste-back weight in crop space: 1 over the face, falling smoothly to 0 before the crop's
    edge so no seam shows. ``feather`` is the soft band's width as a fraction of the crop."""
    band = max(1.0, feather * size)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    # distance to the nearest crop edge, then a smoothstep over the band (leaving a margin of a
    # quarter band untouched, since the warp's border fill lives there)
    edge = np.minimum(np.minimum(xx, size - xx), np.minimum(yy, size - yy)) - band * 0.25
    t = np.clip(edge / band, 0.0, 1.0)
    return (t * t * (3 - 2 * t)).astype(np.float32)


def match_colour(restored: np.ndarray, original: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Shift ``restored`` (float, H×W×C) so its per-channel mean and spread over ``weight`` match
    ``original``'s: a restored face keeps the photo's tone (sepia stays sepia) and its edges meet
    the surrounding print without a step."""
    # weighted moments over pixels × channels in one pass each (5× faster than sum((0, 1)))
    wv = weight.reshape(-1).astype(np.float32)
    total = float(wv.sum()) + 1e-6
    c = restored.shape[-1] if restored.ndim == 3 else 1
    r2 = restored.reshape(-1, c).astype(np.float32, copy=False)
    o2 = original.reshape(-1, original.shape[-1] if original.ndim == 3 else 1).astype(np.float32, copy=False)
    # einsum, not @: a matrix product this small is slower through BLAS's thread pool
    mu_r = np.einsum("i,ij->j", wv, r2) / total
    mu_o = np.einsum("i,ij->j", wv, o2) / total
    sd_r = np.sqrt(np.maximum(np.einsum("i,ij,ij->j", wv, r2, r2) / total - mu_r * mu_r, 0.0)) + 1e-6
    sd_o = np.sqrt(np.maximum(np.einsum("i,ij,ij->j", wv, o2, o2) / total - mu_o * mu_o, 0.0)) + 1e-6
    gain = np.clip(sd_o / sd_r, 0.5, 2.0)  # a restoration sharpens; never let it flatten or explode
    return (restored - mu_r) * gain + mu_o


# A face whose chroma (RGB minus luma) varies less than this over the face mask is from a
# black-and-white or toned (sepia, selenium) print. Measured on the face crops of
# data/photos/real-old: B&W and toned prints 0.000–0.017, colour photos 0.032–0.081 (a synthetic
# full-strength sepia of a bright portrait reaches 0.029: stronger than any print there).
MONOCHROME_CHROMA_STD = 0.025
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def chroma_spread(rgb: np.ndarray, weight: np.ndarray) -> float:
    """Weighted spread of an RGB float image's chroma (RGB − luma), mean over the channels."""
    chroma = rgb - (rgb @ _LUMA)[..., None]
    w = weight.reshape(-1).astype(np.float32)
    c = chroma.reshape(-1, 3)
    total = float(w.sum()) + 1e-6
    mu = np.einsum("i,ij->j", w, c) / total
    var = np.einsum("i,ij,ij->j", w, c, c) / total - mu * mu
    return float(np.sqrt(np.maximum(var, 0.0)).mean())


def keep_print_tone(restored: np.ndarray, original: np.ndarray) -> np.ndarray:
    """The restored face's luminance in the original's colour: CFRNet was trained to give faces
    their colours back, which on a black-and-white print invents a skin tint. A B&W face stays
    grey, a sepia one keeps its tone (the original's chroma, smoothed of grain and JPEG blocks)."""
    chroma = original - (original @ _LUMA)[..., None]
    chroma = cv2.GaussianBlur(chroma, (0, 0), 2.0)
    return (restored @ _LUMA)[..., None] + chroma


def is_print_tone(original: np.ndarray, weight: np.ndarray | None = None) -> bool:
    """Whether a face crop (float RGB) is from a B&W or toned print (see MONOCHROME_CHROMA_STD)."""
    if weight is None:
        weight = face_mask(original.shape[0], 0.1)
    return chroma_spread(original, weight) < MONOCHROME_CHROMA_STD


def in_print_tone(restored: np.ndarray, original: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
    """``restored`` (float RGB) as paste-back uses it: in the original's colour where the original
    face (float RGB, same size) is from a B&W or toned print, unchanged on a colour photo."""
    return keep_print_tone(restored, original) if is_print_tone(original, weight) else restored


def paste_back(
    image: np.ndarray,
    crop: Crop,
    restored: np.ndarray,
    blend: float = 1.0,
    feather: float = 0.1,
    colour_match: bool = True,
    keep_monochrome: bool = True,
) -> np.ndarray:
    """Put a restored face back into ``image`` (in place, and returned).

    ``restored`` is the crop after restoration: same size as ``crop.image``, uint8/uint16 or float
    in [0, 1]. ``blend`` = 1 uses the restoration fully, 0 leaves the photo unchanged. Only the
    face's bounding box in the photo is touched. ``keep_monochrome``: a face from a
    black-and-white or toned print (see MONOCHROME_CHROMA_STD) keeps the print's colour and takes
    only the restored luminance.
    """
    if not 0.0 <= blend <= 1.0:
        raise ValueError(f"blend must be in [0, 1], got {blend}")
    size = crop.size
    if restored.shape[:2] != (size, size):
        raise ValueError(f"restored face is {restored.shape[:2]}, expected {(size, size)}")
    if blend == 0.0:
        return image
    peak = _peak(image.dtype)
    rest = _to_float(restored)
    orig_crop = _to_float(crop.image)
    if rest.ndim == 2:
        rest = rest[..., None]
    channels = image.shape[2] if image.ndim == 3 else 1
    if rest.shape[2] != channels:  # e.g. a grey photo: restore in RGB, paste back its luminance
        rest = rest.mean(2, keepdims=True) if channels == 1 else np.repeat(rest[..., :1], channels, 2)
    if orig_crop.ndim == 2:
        orig_crop = orig_crop[..., None]
    mask = face_mask(size, feather)
    if keep_monochrome and rest.shape[2] == 3 and orig_crop.shape[2] == 3:
        rest = in_print_tone(rest, orig_crop, mask)
    if colour_match:
        rest = match_colour(rest, orig_crop, mask)

    # the face's box in the photo
    inv = invert(crop.matrix)
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64)
    img_corners = cv2.transform(corners[None], inv)[0]
    x0, y0 = np.maximum(np.floor(img_corners.min(0)).astype(int) - 1, 0)
    x1 = min(int(np.ceil(img_corners[:, 0].max())) + 2, image.shape[1])
    y1 = min(int(np.ceil(img_corners[:, 1].max())) + 2, image.shape[0])
    if x1 <= x0 or y1 <= y0:
        return image
    box_w, box_h = x1 - x0, y1 - y0
    to_box = inv.copy()
    to_box[:, 2] -= (x0, y0)

    # Speed (a 12 MP photo's box is ~1 MP per face): the face is brought to the photo's dtype in
    # crop space, where it is cheap, then warped as such; the mask is warped alone; and uint8 /
    # float32 photos are blended by OpenCV in one pass. 5 faces: ~0.55 s → ~0.06 s.
    face = _from_float(np.clip(rest, 0.0, 1.0), image.dtype)
    if face.ndim == 3 and face.shape[2] == 1:
        face = face[..., 0]
    face = _warp_enlarging(face, to_box, (box_w, box_h))
    if face.dtype == np.float32:
        np.clip(face, 0.0, 1.0, out=face)  # cubic overshoot (integer dtypes saturate by themselves)
    # the mask is smooth: bilinear is enough and half the cost of cubic
    alpha = cv2.warpAffine(mask, to_box, (box_w, box_h), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT)
    np.clip(alpha, 0.0, 1.0, out=alpha)
    if blend != 1.0:
        alpha *= np.float32(blend)

    roi = image[y0:y1, x0:x1]
    face = face.reshape(roi.shape)
    if image.dtype in (np.uint8, np.float32):
        image[y0:y1, x0:x1] = cv2.blendLinear(face, np.ascontiguousarray(roi), alpha, 1.0 - alpha)
    else:
        a = alpha.reshape(box_h, box_w, *([1] if roi.ndim == 3 else []))
        out = roi.astype(np.float32) * (1.0 - a) + face.astype(np.float32) * a
        image[y0:y1, x0:x1] = _clip_like(np.rint(out), image.dtype) if peak > 1 else out
    return image


def _warp_enlarging(src: np.ndarray, matrix: np.ndarray, out_size: tuple[int, int]) -> np.ndarray:
    """warp_affine for paste-back, where a 256² crop is usually enlarged 2–4×: a separable cubic
    resize to the final scale, then a bilinear warp at ~1:1 for the rotation and shift. Same
    picture as a cubic warp (the enlarged image is smooth at pixel scale, where bilinear is
    nearly exact) at a third of the cost; shrinking still goes through warp_affine."""
    matrix = np.asarray(matrix, dtype=np.float64)
    scale = similarity_scale(matrix)
    if scale < 1.5:
        return warp_affine(src, matrix, out_size, border=cv2.BORDER_REPLICATE)
    h, w = src.shape[:2]
    rw, rh = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
    big = cv2.resize(src, (rw, rh), interpolation=cv2.INTER_CUBIC)
    f = np.array([rw / w, rh / h])
    # resize maps pixel centres: p = (p' + 0.5) / f - 0.5
    m = matrix.copy()
    m[:, :2] = matrix[:, :2] / f
    m[:, 2] = matrix[:, 2] + matrix[:, :2] @ (0.5 / f - 0.5)
    return cv2.warpAffine(big, m, out_size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _peak(dtype: np.dtype) -> float:
    dtype = np.dtype(dtype)
    return float(np.iinfo(dtype).max) if np.issubdtype(dtype, np.integer) else 1.0


def _to_float(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float32) / _peak(a.dtype)


def _from_float(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    peak = _peak(dtype)
    if np.issubdtype(np.dtype(dtype), np.integer):
        return np.clip(np.rint(a * peak), 0, peak).astype(dtype)
    return np.clip(a, 0.0, 1.0).astype(dtype)


def _clip_like(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if np.issubdtype(np.dtype(dtype), np.integer):
        info = np.iinfo(dtype)
        return np.clip(a, info.min, info.max).astype(dtype)
    return a.astype(dtype)
