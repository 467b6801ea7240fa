"""How a scene of the shapes world looks: anti-aliased shape masks, backgrounds, a bitmap font, `render`.

    render(scene, image_size=32, rng=0) -> uint8 [S, S, 3]

The grammar (what a scene is and says) lives in shapes.py; this module only draws the scene's fields (objects with
shape, colour, x, y and diameter(); background, rendition and word), with all randomness from the rng given.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

# Saturated, so clearly off the grey background; pairwise RGB distance >= 105 (orange sits between red and yellow).
COLOUR_RGB = {
    "red": (210, 25, 25),
    "green": (30, 170, 50),
    "blue": (30, 70, 225),
    "yellow": (235, 230, 40),
    "purple": (150, 40, 190),
    "orange": (255, 135, 0),
}
# The "shade" rendition: shades of each colour that training never shows.
SHADE_RGB = {
    c: {"dark": tuple(round(0.55 * v) for v in rgb), "pastel": tuple(round(0.45 * v + 0.55 * 255) for v in rgb)}
    for c, rgb in COLOUR_RGB.items()
}


# ----------------------------------------------------------------------------------------------
# Shapes: inside tests in unit coordinates, turned into anti-aliased masks


def _polygon_inside(u: np.ndarray, v: np.ndarray, verts: list[tuple[float, float]]) -> np.ndarray:
    """Even-odd point-in-polygon test on arrays of points u, v (any matching shape)."""
    inside = np.zeros(u.shape, dtype=bool)
    for (x1, y1), (x2, y2) in zip(verts, verts[1:] + verts[:1]):
        crosses = (y1 > v) != (y2 > v)
        x_at = x1 + (v - y1) * (x2 - x1) / (y2 - y1 + 1e-12)
        inside ^= crosses & (u < x_at)
    return inside


def _star_vertices(points=5, inner=0.45, shift=0.095) -> list[tuple[float, float]]:
    """The 2 * points corners of a star, alternately on radius 1 and `inner`."""
    verts = []
    for i in range(2 * points):
        r = 1.0 if i % 2 == 0 else inner
        a = -math.pi / 2 + i * math.pi / points  # start pointing up (v grows downwards)
        verts.append((r * math.cos(a), r * math.sin(a) + shift))
    return verts


def _unit_shape(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside test in unit coordinates: u, v in [-1, 1], v pointing down. Every shape is left-right symmetric."""
    if shape == "circle":
        return u * u + v * v <= 1.0
    if shape == "square":
        return (np.abs(u) <= 0.82) & (np.abs(v) <= 0.82)
    if shape == "triangle":
        return _polygon_inside(u, v, [(0.0, -0.92), (1.0, 0.84), (-1.0, 0.84)])
    if shape == "star":
        return _polygon_inside(u, v, _star_vertices())
    if shape == "cross":
        arm, reach = 0.32, 0.95
        return ((np.abs(u) <= arm) & (np.abs(v) <= reach)) | ((np.abs(v) <= arm) & (np.abs(u) <= reach))
    if shape == "heart":
        x, y = 1.14 * u, -1.12 * v + 0.12  # the classic implicit heart, (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0
        return (x * x + y * y - 1.0) ** 3 - x * x * y**3 <= 0.0
    raise ValueError(f"unknown shape {shape!r}; expected circle, square, triangle, star, cross or heart")


def _erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary erosion by a disk of the given radius (pixels): a pixel stays if the whole disk around it is set."""
    out = mask.copy()
    padded = np.pad(mask, radius, constant_values=False)
    h, w = mask.shape
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dy * dy + dx * dx <= radius * radius:
                out &= padded[radius + dy : radius + dy + h, radius + dx : radius + dx + w]
    return out


@lru_cache(maxsize=4096)
def shape_mask(shape: str, diameter_q: int, stroke_q: int = 0, supersample: int = 4) -> np.ndarray:
    """Anti-aliased coverage of a shape: float32 [k, k, 1] in 0..1, centred, k = ceil(diameter) + 2.

    diameter_q: the diameter in quarter pixels; stroke_q: outline width in quarter pixels (0 = filled).
    """
    d = diameter_q / 4
    k = math.ceil(d) + 2
    ss = supersample
    p = (np.arange(k * ss) + 0.5) / ss - k / 2  # sub-pixel centres relative to the mask centre, [k*ss]
    v, u = np.meshgrid(p / (d / 2), p / (d / 2), indexing="ij")
    inside = _unit_shape(shape, u, v)  # [k*ss, k*ss]
    if stroke_q:
        inside &= ~_erode(inside, max(1, round(stroke_q / 4 * ss)))
    cover = inside.reshape(k, ss, k, ss).mean(axis=(1, 3))  # [k, k]
    return cover.astype(np.float32)[:, :, None]  # [k, k, 1]


# ----------------------------------------------------------------------------------------------
# Backgrounds


@lru_cache(maxsize=16)
def _upsample_matrix(coarse: int, image_size: int) -> np.ndarray:
    """Bilinear interpolation weights [image_size, coarse] (rows sum to 1)."""
    pos = np.clip((np.arange(image_size) + 0.5) / image_size * coarse - 0.5, 0, coarse - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, coarse - 1)
    w = np.zeros((image_size, coarse), dtype=np.float32)
    w[np.arange(image_size), lo] += 1 - (pos - lo)
    w[np.arange(image_size), hi] += pos - lo
    return w


@lru_cache(maxsize=8)
def _pixel_grid(s: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of every pixel, int [s, s] each; made once per size (read-only: shared by every image)."""
    yy, xx = np.mgrid[0:s, 0:s]
    yy.flags.writeable = xx.flags.writeable = False
    return yy, xx


def _background(kind: str, s: int, rng: np.random.Generator) -> np.ndarray:
    """A background of the given kind: float32 [s, s, 3] in 0..255 (grey but for "tinted")."""
    if kind == "plain":
        grey = np.full((s, s), rng.uniform(90, 160), dtype=np.float32)
    elif kind == "noise":
        grey = rng.uniform(90, 160) + rng.normal(0.0, 10.0, (s, s)).astype(np.float32)
    elif kind == "gradient":
        g0, g1 = rng.uniform(70, 180, 2)
        a = rng.uniform(0, 2 * math.pi)
        yy, xx = _pixel_grid(s)  # [s, s] each
        t = (math.cos(a) * (xx - s / 2) + math.sin(a) * (yy - s / 2)) / s + 0.5  # [s, s] ~ 0..1
        grey = (g0 + (g1 - g0) * t + rng.normal(0.0, 5.0, (s, s))).astype(np.float32)
    elif kind == "checker":
        g, contrast = rng.uniform(95, 155), rng.uniform(10, 25)
        cell = max(2, round(rng.uniform(3, 7) * s / 32))
        yy, xx = _pixel_grid(s)  # [s, s] each
        sign = ((xx // cell + yy // cell) % 2) * 2 - 1  # [s, s] of -1/+1
        grey = (g + contrast * sign + rng.normal(0.0, 5.0, (s, s))).astype(np.float32)
    elif kind == "tinted":
        w = _upsample_matrix(4, s)
        coarse = rng.uniform(-45, 45, (4, 4, 3)).astype(np.float32)  # smooth colour blotches
        field = np.einsum("yi,ijc,xj->yxc", w, coarse, w)  # [s, s, 3]
        noise = rng.normal(0.0, 5.0, (s, s, 1)).astype(np.float32)
        return 125.0 + field + noise
    else:
        raise ValueError(f"unknown background {kind!r}; expected noise, plain, gradient, checker or tinted")
    return np.repeat(grey[:, :, None], 3, axis=2)  # [s, s, 3]


# ----------------------------------------------------------------------------------------------
# Words: a 3x5 bitmap font (capital letter forms, readable at 32 px)

_FONT_ROWS = {
    "a": ".#.|#.#|###|#.#|#.#", "b": "##.|#.#|##.|#.#|##.", "c": ".##|#..|#..|#..|.##",
    "d": "##.|#.#|#.#|#.#|##.", "e": "###|#..|##.|#..|###", "f": "###|#..|##.|#..|#..",
    "g": ".##|#..|#.#|#.#|.##", "h": "#.#|#.#|###|#.#|#.#", "i": "###|.#.|.#.|.#.|###",
    "j": "..#|..#|..#|#.#|.#.", "k": "#.#|#.#|##.|#.#|#.#", "l": "#..|#..|#..|#..|###",
    "m": "#.#|###|###|#.#|#.#", "n": "##.|#.#|#.#|#.#|#.#", "o": ".#.|#.#|#.#|#.#|.#.",
    "p": "##.|#.#|##.|#..|#..", "q": ".#.|#.#|#.#|##.|.##", "r": "##.|#.#|##.|#.#|#.#",
    "s": ".##|#..|.#.|..#|##.", "t": "###|.#.|.#.|.#.|.#.", "u": "#.#|#.#|#.#|#.#|###",
    "v": "#.#|#.#|#.#|#.#|.#.", "w": "#.#|#.#|###|###|#.#", "x": "#.#|#.#|.#.|#.#|#.#",
    "y": "#.#|#.#|.#.|.#.|.#.", "z": "###|..#|.#.|#..|###", " ": "...|...|...|...|...",
}  # fmt: skip
FONT = {ch: np.array([[c == "#" for c in row] for row in rows.split("|")]) for ch, rows in _FONT_ROWS.items()}


def text_bitmap(text: str, pixels_per_dot: int = 1) -> np.ndarray:
    """bool [5 * p, (4 * len - 1) * p] with p = pixels_per_dot: the text in the 3x5 font, letters 1 column apart."""
    cols = []
    for i, ch in enumerate(text.lower()):
        if ch not in FONT:
            raise ValueError(f"the bitmap font has no glyph for {ch!r}; use letters a-z and spaces")
        if i:
            cols.append(np.zeros((5, 1), dtype=bool))
        cols.append(FONT[ch])
    bitmap = np.concatenate(cols, axis=1)  # [5, 4*len-1]
    return bitmap.repeat(pixels_per_dot, axis=0).repeat(pixels_per_dot, axis=1)


def _draw_word(img: np.ndarray, scene, rng: np.random.Generator) -> None:
    """Write scene.word in white or black in the top or bottom strip, whichever objects cover least."""
    s = img.shape[0]
    dot = max(1, s // 32)  # pixels per font dot; also the margin
    bitmap = text_bitmap(scene.word, dot)
    h, w = bitmap.shape
    strips = [dot, s - dot - h]  # candidate top rows

    def covered(top):
        rows = 0.0
        for o in scene.objects:
            r = o.diameter(s) / 2
            rows += max(0.0, min(top + h, o.y * s + r) - max(top, o.y * s - r))
        return rows

    cover = [covered(t) for t in strips]
    top = strips[int(rng.integers(2))] if cover[0] == cover[1] else strips[int(np.argmin(cover))]
    left = int(rng.integers(dot, s - dot - w + 1)) if w <= s - 2 * dot else 0
    w = min(w, s - left)
    value = 245.0 if rng.random() < 0.5 else 10.0
    img[top : top + h, left : left + w][bitmap[:, :w]] = value


# ----------------------------------------------------------------------------------------------


def render(scene, image_size: int = 32, rng=None) -> np.ndarray:
    """Draw a shapes.Scene: uint8 [S, S, 3]. rng (Generator or seed; None = seed 0) draws background noise
    and the rendition's choices, so the same rng state gives the same pixels (a scene and its twin share
    their background when rendered with equal seeds)."""
    rng = np.random.default_rng(0 if rng is None else rng)  # a Generator is used as it is
    s = image_size
    img = _background(scene.background, s, rng)  # float32 [s, s, 3]
    stroke_q = round(4 * 1.2 * s / 32) if scene.rendition == "sketch" else 0
    for o in scene.objects:
        mask = shape_mask(o.shape, max(4, round(4 * o.diameter(s))), stroke_q)  # [k, k, 1]
        k = mask.shape[0]
        x0, y0 = round(o.x * s - k / 2), round(o.y * s - k / 2)
        # clip the mask's box to the image
        ax0, ay0, ax1, ay1 = max(x0, 0), max(y0, 0), min(x0 + k, s), min(y0 + k, s)
        if ax0 >= ax1 or ay0 >= ay1:
            continue
        alpha = mask[ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0]  # [h, w, 1]
        colour = np.asarray(COLOUR_RGB[o.colour], dtype=np.float32)  # [3]
        if scene.rendition == "shade":
            colour = np.asarray(SHADE_RGB[o.colour]["dark" if rng.random() < 0.5 else "pastel"], dtype=np.float32)
        elif scene.rendition == "texture":
            period = max(2, s // 16)
            ys, xs = np.mgrid[ay0:ay1, ax0:ax1]  # [h, w] each
            if rng.random() < 0.5:
                on = ((xs + ys) // period) % 2 == 0  # diagonal stripes
            else:
                on = ((xs // period + ys // period) % 2) == 0  # checks
            colour = np.where(on[:, :, None], colour, 0.3 * colour)  # [h, w, 3]
        region = img[ay0:ay1, ax0:ax1]
        region += alpha * (colour - region)
    if scene.word is not None:
        _draw_word(img, scene, rng)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)
