"""The shapes world: procedurally generated, captioned RGB images that a tiny CLIP learns in a minute.

A scene is one to four coloured shapes on a grey background, described by a small grammar:

    single    "a large red circle", "a photo of one red circle"
    pair      "a red circle and a blue star"
    relation  "a green star to the left of a yellow triangle"   (always the true relation)
    count     "three blue squares"

Everything is explicit (`Obj`, `Scene`) so that evaluation and probes can build a scene, change one
thing (mirror it, swap its objects, write a word on it) and render both versions exactly.

Words in images (the typographic attack): a single-object scene may carry a shape name written in a
3x5 bitmap font in a free strip at the top or bottom. Its captions then end with "with the word
<word>", e.g. "a red circle with the word star". A model trained on such images learns to read.

Renditions, for distribution-shift tests: "normal", "sketch" (outline only), "texture" (stripes or
checks of the object's colour), "shade" (dark or pastel shades never seen in training) and
"background" (a tinted background kind never used in training). All randomness comes from a seeded
numpy Generator: the same seed gives the same bytes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
from tqdm.auto import tqdm

from miniclip.data import PairedData

SHAPES = ("circle", "square", "triangle", "star", "cross", "heart")
COLOURS = ("red", "green", "blue", "yellow", "purple", "orange")
SIZES = ("small", "large")
RELATIONS = ("to the left of", "to the right of", "above", "below")
COUNT_WORDS = {2: "two", 3: "three", 4: "four"}
KINDS = ("single", "pair", "relation", "count")
RENDITIONS = ("normal", "sketch", "texture", "shade", "background")
BACKGROUNDS = ("noise", "plain", "gradient", "checker", "mixed", "tinted")

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
INVERSE = {"to the left of": "to the right of", "to the right of": "to the left of", "above": "below", "below": "above"}

# Object diameter as a fraction of the image side: at 32 px about 10 and 14 pixels (smaller circles and
# squares are hard to tell apart). Two large objects never stand side by side in a relation scene.
SIZE_FRACTION = {"small": 0.30, "large": 0.44}
SIZE_JITTER = (0.92, 1.08)  # each object's diameter is multiplied by a factor drawn from this range
GAP = 0.06  # the least free space between two objects, as a fraction of the image side
ALIGN = 0.03  # related objects differ by at most 2 * ALIGN across the relation's axis
TRAINING_BACKGROUNDS = ("noise", "gradient", "checker")  # what background="mixed" draws from
UNSEEN_BACKGROUND = "tinted"  # used only by the "background" rendition
WORD_SUFFIX = " with the word {}"  # appended to every caption of a word-bearing image


# ----------------------------------------------------------------------------------------------
# Scenes


@dataclass
class Obj:
    """One shape. x, y: its centre in 0..1 image coordinates (y down); scale: size jitter (~1)."""

    shape: str
    colour: str
    size: str
    x: float
    y: float
    scale: float = 1.0

    def diameter(self, image_size: int) -> float:
        """Diameter in pixels for an image of image_size x image_size."""
        return SIZE_FRACTION[self.size] * self.scale * image_size


@dataclass
class Scene:
    """What an image shows. relation (if any) says where objects[0] is relative to objects[1]."""

    objects: list[Obj]
    relation: str | None = None
    word: str | None = None
    background: str = "noise"
    rendition: str = "normal"

    @property
    def kind(self) -> str:
        """"single", "pair", "relation" or "count"."""
        if self.relation is not None:
            return "relation"
        if len(self.objects) == 1:
            return "single"
        first = self.objects[0]
        if all(o.shape == first.shape and o.colour == first.colour for o in self.objects):
            return "count"
        return "pair"

    def to_dict(self) -> dict:
        """Plain facts about the scene (what PairedData.attributes stores per image)."""
        return {
            "kind": self.kind,
            "count": len(self.objects),
            "shapes": [o.shape for o in self.objects],
            "colours": [o.colour for o in self.objects],
            "sizes": [o.size for o in self.objects],
            "relation": self.relation,
            "word": self.word,
            "background": self.background,
            "rendition": self.rendition,
            "objects": [dict(vars(o)) for o in self.objects],  # Obj holds only scalars: a shallow copy is a copy
        }

    def mirrored(self) -> "Scene":
        """The left-right mirror image; the relation is updated so that the scene stays true."""
        objects = [replace(o, x=1.0 - o.x) for o in self.objects]
        relation = {"to the left of": "to the right of", "to the right of": "to the left of"}.get(
            self.relation, self.relation
        )
        return replace(self, objects=objects, relation=relation)

    def swapped(self) -> "Scene":
        """The two objects trade places (appearance kept); the relation is inverted to stay true."""
        if len(self.objects) != 2:
            raise ValueError(f"swapped() needs a two-object scene, this one has {len(self.objects)}")
        a, b = self.objects
        objects = [replace(a, x=b.x, y=b.y), replace(b, x=a.x, y=a.y)]
        relation = None if self.relation is None else INVERSE[self.relation]
        return replace(self, objects=objects, relation=relation)


def class_names() -> list[str]:
    """The 36 "colour shape" classes of single-object evaluation, colour-major: "red circle", "red square", ..."""
    return [f"{c} {s}" for c in COLOURS for s in SHAPES]


def _rng(rng) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(0 if rng is None else rng)


def _as_tuple(value, n: int) -> tuple:
    """A str, a sequence or None -> a tuple of n entries (None = to be drawn)."""
    if value is None or isinstance(value, str):
        return (value,) * n
    value = tuple(value)
    if len(value) == 1:
        return value * n
    if len(value) != n:
        raise ValueError(f"expected 1 or {n} values, got {len(value)}: {value}")
    return value


def _draw_colour_shape(rng, colour, shape, holdout, correlation, avoid=None):
    """Draw the unset parts of (colour, shape), never a held-out pair, never sharing an attribute with avoid."""
    if colour is not None and shape is not None:
        return colour, shape  # asked for explicitly: allowed even if held out (for probes)
    for _ in range(1000):
        c = colour if colour is not None else COLOURS[rng.integers(len(COLOURS))]
        if shape is not None:
            s = shape
        elif correlation is not None and c == correlation["colour"]:
            # the planted bias: this share of objects of that colour have that shape
            if rng.random() < correlation["strength"]:
                s = correlation["shape"]
            else:
                others = [x for x in SHAPES if x != correlation["shape"]]
                s = others[rng.integers(len(others))]
        else:
            s = SHAPES[rng.integers(len(SHAPES))]
        if (c, s) in holdout:
            continue
        if avoid is not None and (c == avoid[0] or s == avoid[1]):
            continue
        return c, s
    raise ValueError(f"cannot draw a colour/shape for colour={colour} shape={shape} with holdout={sorted(holdout)}")


def _place_related(rng, r_a: float, r_b: float, relation: str, margin: float):
    """Centres (x, y) of A and B with A `relation` B, clearly apart along one axis and aligned across it."""
    a_first = relation in ("to the left of", "above")  # A has the smaller coordinate along the axis
    r_first, r_second = (r_a, r_b) if a_first else (r_b, r_a)
    # along the axis: the first object's edge comes at least GAP before the second's
    lo, hi = r_first + margin, 1.0 - r_second - margin
    need = r_first + r_second + GAP
    slack = hi - lo - need
    if slack < 0:
        raise ValueError(f"objects of radius {r_a:.2f} and {r_b:.2f} do not fit side by side")
    u1, u2 = np.sort(rng.uniform(0.0, slack, 2))
    first, second = lo + u1, lo + need + u2
    along_a, along_b = (first, second) if a_first else (second, first)
    # across the axis: a common line, each object within ALIGN of it
    r_max = max(r_a, r_b)
    line = rng.uniform(r_max + margin + ALIGN, 1.0 - r_max - margin - ALIGN)
    across_a, across_b = line + rng.uniform(-ALIGN, ALIGN, 2)
    if relation in ("to the left of", "to the right of"):
        return (along_a, across_a), (along_b, across_b)
    return (across_a, along_a), (across_b, along_b)


def _place_apart(rng, radii: list[float], margin: float, tries: int = 200):
    """Centres for objects of the given radii (fractions of the side) that do not touch (GAP apart)."""
    for _ in range(tries):
        centres: list[tuple[float, float]] = []
        for r in radii:
            for _ in range(30):
                x, y = rng.uniform(r + margin, 1.0 - r - margin, 2).tolist()  # Python floats: faster arithmetic
                if all((x - cx) ** 2 + (y - cy) ** 2 >= (r + cr + GAP) ** 2 for (cx, cy), cr in zip(centres, radii)):
                    centres.append((x, y))
                    break
            else:
                break
        if len(centres) == len(radii):
            return centres
    raise ValueError(f"could not place {len(radii)} objects of radii {radii} apart")


def make_scene(
    kind: str = "single",
    rng=None,
    *,
    shapes=None,
    colours=None,
    sizes=None,
    relation: str | None = None,
    count: int | None = None,
    word: str | None = None,
    background: str = "noise",
    rendition: str = "normal",
    holdout=(),
    correlation: dict | None = None,
    image_size: int = 32,
) -> Scene:
    """Build a scene of the given kind; whatever is not specified is drawn from rng (a Generator or a seed).

    kind: "single" (1 object), "pair" (2 different objects, "A and B"), "relation" (A `relation` B),
          "count" (`count` copies, 2-4, of one small shape in one colour).
    shapes, colours, sizes: a value for every object or a sequence, one per object (None = draw it).
    relation: one of RELATIONS (drawn if None). word: text to write on the image (None = no word).
    holdout: (colour, shape) pairs never drawn. correlation: {"colour", "shape", "strength"} bias.
    Positions are drawn so that relations are unambiguous; image_size only sets the 1-pixel margin.
    """
    rng = _rng(rng)
    holdout = {tuple(p) for p in holdout}
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if rendition not in RENDITIONS:
        raise ValueError(f"rendition must be one of {RENDITIONS}, got {rendition!r}")
    if background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {BACKGROUNDS}, got {background!r}")
    if rendition == "background":
        background = UNSEEN_BACKGROUND
    elif background == "mixed":
        background = TRAINING_BACKGROUNDS[rng.integers(len(TRAINING_BACKGROUNDS))]

    if kind == "count":
        n = count if count is not None else int(rng.integers(2, 5))
        if n not in COUNT_WORDS:
            raise ValueError(f"count must be one of {sorted(COUNT_WORDS)}, got {n}")
        colour, shape = _draw_colour_shape(rng, _as_tuple(colours, 1)[0], _as_tuple(shapes, 1)[0], holdout, correlation)
        pairs = [(colour, shape)] * n
        size_list = [s or "small" for s in _as_tuple(sizes, n)]
    else:
        n = 1 if kind == "single" else 2
        cs, ss = _as_tuple(colours, n), _as_tuple(shapes, n)
        pairs = []
        for i in range(n):
            # the two objects of a pair differ in colour and in shape, so that swaps are meaningful
            pairs.append(_draw_colour_shape(rng, cs[i], ss[i], holdout, correlation, avoid=pairs[0] if i else None))
        given = _as_tuple(sizes, n)
        size_list = [s or SIZES[rng.integers(len(SIZES))] for s in given]
        if kind == "relation" and size_list == ["large", "large"] and given == (None, None):
            size_list[rng.integers(2)] = "small"  # two large objects do not fit side by side with a clear gap

    scales = rng.uniform(*SIZE_JITTER, n)
    radii = [SIZE_FRACTION[z] * k / 2 for z, k in zip(size_list, scales)]
    margin = 1.0 / image_size
    if kind == "relation":
        relation = relation if relation is not None else RELATIONS[rng.integers(len(RELATIONS))]
        if relation not in RELATIONS:
            raise ValueError(f"relation must be one of {RELATIONS}, got {relation!r}")
        centres = _place_related(rng, radii[0], radii[1], relation, margin)
    else:
        relation = None
        centres = _place_apart(rng, radii, margin)
    objects = [
        Obj(shape=s, colour=c, size=z, x=float(x), y=float(y), scale=float(k))
        for (c, s), z, (x, y), k in zip(pairs, size_list, centres, scales)
    ]
    return Scene(objects=objects, relation=relation, word=word, background=background, rendition=rendition)


# ----------------------------------------------------------------------------------------------
# Captions


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def plural(shape: str) -> str:
    """"cross" -> "crosses", "star" -> "stars"."""
    return shape + ("es" if shape.endswith(("s", "x", "sh", "ch")) else "s")


def noun_phrase(colour: str, shape: str, size: str | None = None, count: int = 1) -> str:
    """"a red circle", "a large red circle", "an orange star", "three red stars" (count > 1)."""
    words = " ".join(w for w in (size, colour) if w)
    if count == 1:
        return f"{_article(words)} {words} {shape}"
    return f"{COUNT_WORDS[count]} {words} {plural(shape)}"


def caption_cores(scene: Scene) -> list[str]:
    """The distinct captions (without "a photo of") that the grammar allows for a scene, canonical first."""
    objs = scene.objects
    if scene.kind == "single":
        o = objs[0]
        cores = [noun_phrase(o.colour, o.shape), noun_phrase(o.colour, o.shape, o.size), f"one {o.colour} {o.shape}"]
    elif scene.kind == "count":
        o = objs[0]
        n = len(objs)
        cores = [noun_phrase(o.colour, o.shape, count=n)]
        if all(x.size == o.size for x in objs):
            cores.append(noun_phrase(o.colour, o.shape, o.size, count=n))
    else:
        a, b = objs
        pa, pb = noun_phrase(a.colour, a.shape), noun_phrase(b.colour, b.shape)
        za, zb = noun_phrase(a.colour, a.shape, a.size), noun_phrase(b.colour, b.shape, b.size)
        if scene.relation is None:
            cores = [f"{pa} and {pb}", f"{pb} and {pa}", f"{za} and {zb}"]
        else:
            rel, inv = scene.relation, INVERSE[scene.relation]
            cores = [f"{pa} {rel} {pb}", f"{pb} {inv} {pa}", f"{za} {rel} {zb}"]
    if scene.word is not None:
        cores = [c + WORD_SUFFIX.format(scene.word) for c in cores]
    return cores


def caption_core(caption: str) -> str:
    """A caption without its optional "a photo of " and full stop: what caption_cores() lists."""
    caption = caption.removesuffix(".")
    return caption.removeprefix("a photo of ")


RELATION_WORDS = tuple(f" {r} " for r in RELATIONS)  # with spaces: a relation between two noun phrases


def swap_relation(caption: str) -> str | None:
    """'a red circle to the left of a blue star' -> 'a blue star to the left of a red circle' (None if no relation).

    A leading "a photo of " and a final full stop stay where they are. The same words in another order: a
    bag-of-words text encoder cannot tell the two apart, so as an extra negative (train's hard_negatives) it
    forces the model to use word order (NegCLIP, Yuksekgonul et al., 2023).
    """
    stop = "." if caption.endswith(".") else ""  # the full stop stays at the end
    caption = caption[: len(caption) - len(stop)]
    prefix = "a photo of " if caption.startswith("a photo of ") else ""  # so does the prefix
    for rel in RELATION_WORDS:
        if rel in caption:
            left, right = caption[len(prefix):].split(rel, 1)
            return f"{prefix}{right}{rel}{left}{stop}"
    return None


def describe(scene: Scene, rng=None) -> list[str]:
    """2-3 different true captions of a scene. Each is prefixed "a photo of" with probability 1/2 and ends
    with a full stop with probability 1/2 (as zero-shot templates like "a photo of a {}." do)."""
    rng = _rng(rng)
    cores = caption_cores(scene)
    k = int(rng.integers(2, 4))
    order = rng.permutation(len(cores))
    prefixed = rng.random(k) < 0.5
    stops = rng.random(k) < 0.5
    out = []
    for i in range(k):
        core = cores[order[i % len(cores)]]
        # when there are fewer cores than captions, reuse a core with the other prefix choice
        use_prefix = prefixed[i] if i < len(cores) else not prefixed[i % len(cores)]
        out.append(("a photo of " if use_prefix else "") + core + ("." if stops[i] else ""))
    return out


# ----------------------------------------------------------------------------------------------
# Rendering


def _polygon_inside(u: np.ndarray, v: np.ndarray, verts: list[tuple[float, float]]) -> np.ndarray:
    """Even-odd point-in-polygon test on arrays of points u, v (any matching shape)."""
    inside = np.zeros(u.shape, dtype=bool)
    n = len(verts)
    for i in range(n):
        (x1, y1), (x2, y2) = verts[i], verts[(i + 1) % n]
        crosses = (y1 > v) != (y2 > v)
        x_at = x1 + (v - y1) * (x2 - x1) / (y2 - y1 + 1e-12)
        inside ^= crosses & (u < x_at)
    return inside


def _star_vertices(points=5, inner=0.45, shift=0.095):
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
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def _erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary erosion by a disk of the given radius (pixels)."""
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


@lru_cache(maxsize=16)
def _grid(image_size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:image_size, 0:image_size]
    return yy, xx


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


def _background(kind: str, s: int, rng: np.random.Generator) -> np.ndarray:
    """float32 [s, s, 3] in 0..255."""
    yy, xx = _grid(s)
    if kind == "plain":
        grey = np.full((s, s), rng.uniform(90, 160), dtype=np.float32)
    elif kind == "noise":
        grey = rng.uniform(90, 160) + rng.normal(0.0, 10.0, (s, s)).astype(np.float32)
    elif kind == "gradient":
        g0, g1 = rng.uniform(70, 180, 2)
        a = rng.uniform(0, 2 * math.pi)
        t = (math.cos(a) * (xx - s / 2) + math.sin(a) * (yy - s / 2)) / s + 0.5  # [s, s] ~ 0..1
        grey = (g0 + (g1 - g0) * t + rng.normal(0.0, 5.0, (s, s))).astype(np.float32)
    elif kind == "checker":
        g, contrast = rng.uniform(95, 155), rng.uniform(10, 25)
        cell = max(2, round(rng.uniform(3, 7) * s / 32))
        sign = ((xx // cell + yy // cell) % 2) * 2 - 1  # [s, s] of -1/+1
        grey = (g + contrast * sign + rng.normal(0.0, 5.0, (s, s))).astype(np.float32)
    elif kind == "tinted":
        w = _upsample_matrix(4, s)
        coarse = rng.uniform(-45, 45, (4, 4, 3)).astype(np.float32)  # smooth colour blotches
        field = np.einsum("yi,ijc,xj->yxc", w, coarse, w)  # [s, s, 3]
        noise = rng.normal(0.0, 5.0, (s, s, 1)).astype(np.float32)
        return 125.0 + field + noise
    else:
        raise ValueError(f"unknown background {kind!r}; expected one of {BACKGROUNDS}")
    return np.repeat(grey[:, :, None], 3, axis=2)


# A 3x5 bitmap font (capital letter forms, readable at 32 px).
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


def text_bitmap(text: str, scale: int = 1) -> np.ndarray:
    """bool [5*scale, (4*len-1)*scale]: the text in the 3x5 font, one blank column between letters."""
    cols = []
    for i, ch in enumerate(text.lower()):
        if ch not in FONT:
            raise ValueError(f"the bitmap font has no glyph for {ch!r}; use letters a-z and spaces")
        if i:
            cols.append(np.zeros((5, 1), dtype=bool))
        cols.append(FONT[ch])
    bitmap = np.concatenate(cols, axis=1)  # [5, 4*len-1]
    return bitmap.repeat(scale, axis=0).repeat(scale, axis=1)


def _draw_word(img: np.ndarray, scene: Scene, rng: np.random.Generator) -> None:
    """Write scene.word in white or black in the top or bottom strip, whichever objects cover least."""
    s = img.shape[0]
    scale = max(1, s // 32)
    bitmap = text_bitmap(scene.word, scale)
    h, w = bitmap.shape
    m = scale  # margin
    strips = [m, s - m - h]  # candidate top rows

    def covered(top):
        rows = 0.0
        for o in scene.objects:
            r = o.diameter(s) / 2
            rows += max(0.0, min(top + h, o.y * s + r) - max(top, o.y * s - r))
        return rows

    cover = [covered(t) for t in strips]
    top = strips[int(rng.integers(2))] if cover[0] == cover[1] else strips[int(np.argmin(cover))]
    left = int(rng.integers(m, s - m - w + 1)) if w <= s - 2 * m else 0
    w = min(w, s - left)
    value = 245.0 if rng.random() < 0.5 else 10.0
    img[top : top + h, left : left + w][bitmap[:, :w]] = value


def render(scene: Scene, image_size: int = 32, rng=None) -> np.ndarray:
    """Draw a scene: uint8 [S, S, 3]. rng (Generator or seed; None = seed 0) draws background noise and
    the rendition's choices, so the same rng state gives the same pixels (a scene and its twin share
    their background when rendered with equal seeds)."""
    rng = _rng(rng)
    s = image_size
    img = _background(scene.background, s, rng)  # float32 [s, s, 3]
    stroke_q = round(4 * 1.2 * s / 32) if scene.rendition == "sketch" else 0
    yy, xx = _grid(s)
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
            ys, xs = yy[ay0:ay1, ax0:ax1], xx[ay0:ay1, ax0:ax1]
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


# ----------------------------------------------------------------------------------------------
# Data sets


def _word_for(shape: str, word_match: float, rng: np.random.Generator) -> str:
    if rng.random() < word_match:
        return shape
    others = [x for x in SHAPES if x != shape]
    return others[rng.integers(len(others))]


def generate(
    n: int,
    seed: int = 0,
    image_size: int = 32,
    *,
    mix=(0.5, 0.35, 0.15),
    word_fraction: float = 0.0,
    word_match: float = 0.5,
    rendition: str = "normal",
    holdout=(),
    correlation: dict | None = None,
    background: str = "noise",
) -> PairedData:
    """n captioned scenes: images uint8 [n, S, S, 3], 2-3 captions each, attributes = scene.to_dict().

    mix: shares of single / two-object / count scenes (two-object scenes are half "A and B" pairs,
         half relations). word_fraction: the share of single-object scenes that carry a word, which names
         their true shape with probability word_match and another shape otherwise.
    rendition: one of RENDITIONS for every image. holdout: (colour, shape) pairs that never appear.
    correlation: e.g. {"colour": "red", "shape": "circle", "strength": 0.9}: 90% of red objects are circles.
    background: "noise" (default), "plain", "gradient", "checker", "mixed" (one of the three textured
    training kinds per image) or "tinted" (the unseen kind). Same arguments -> identical bytes.
    """
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16, got {image_size}")
    if correlation is not None:
        missing = {"colour", "shape", "strength"} - set(correlation)
        if missing or correlation["colour"] not in COLOURS or correlation["shape"] not in SHAPES:
            example = {"colour": "red", "shape": "circle", "strength": 0.9}
            raise ValueError(f"correlation must be like {example}, got {correlation}")
    holdout = sorted({tuple(p) for p in holdout})
    mix = np.asarray(mix, dtype=np.float64)
    if mix.shape != (3,) or (mix < 0).any() or mix.sum() <= 0:
        raise ValueError(f"mix must be three non-negative shares (single, two-object, count), got {tuple(mix)}")
    cumulative = np.cumsum(mix / mix.sum())
    rng = np.random.default_rng(seed)
    images = np.empty((n, image_size, image_size, 3), dtype=np.uint8)
    captions: list[str] = []
    caption_image: list[int] = []
    attributes: list[dict] = []
    for i in tqdm(range(n), desc="shapes", disable=n < 20000, leave=False):
        u = rng.random()
        if u < cumulative[0]:
            kind = "single"
        elif u < cumulative[1]:
            kind = "pair" if rng.random() < 0.5 else "relation"
        else:
            kind = "count"
        scene = make_scene(
            kind, rng, background=background, rendition=rendition, holdout=holdout, correlation=correlation,
            image_size=image_size,
        )  # fmt: skip
        if kind == "single" and word_fraction > 0 and rng.random() < word_fraction:
            scene.word = _word_for(scene.objects[0].shape, word_match, rng)
        images[i] = render(scene, image_size, rng)
        for c in describe(scene, rng):
            captions.append(c)
            caption_image.append(i)
        attributes.append(scene.to_dict())
    meta = {
        "source": "shapes", "n": n, "seed": seed, "image_size": image_size, "mix": [float(m) for m in mix],
        "word_fraction": word_fraction, "word_match": word_match, "rendition": rendition,
        "holdout": [list(p) for p in holdout], "correlation": correlation, "background": background,
    }  # fmt: skip
    return PairedData(images, captions, np.asarray(caption_image, dtype=np.int64), attributes, meta)


def single_object_set(
    n_per_class: int,
    seed: int = 0,
    image_size: int = 32,
    rendition: str = "normal",
    word: str | None = None,
    background: str = "noise",
) -> tuple[PairedData, np.ndarray]:
    """One object per image, n_per_class images for each of the 36 classes (class-major order).

    Returns (data, labels int64 [36 * n_per_class]), label = index into class_names().
    word: None, a literal word written on every image, "true" (the object's own shape name) or
    "wrong" (another shape name, drawn per image). Objects, sizes, positions and backgrounds do not
    depend on `word`, so a set with words is the same images as the set without, plus the text.
    """
    names = class_names()
    n = len(names) * n_per_class
    images = np.empty((n, image_size, image_size, 3), dtype=np.uint8)
    captions, caption_image, attributes = [], [], []
    labels = np.repeat(np.arange(len(names), dtype=np.int64), n_per_class)  # [N]
    word_rng = np.random.default_rng([seed, 1])
    for i, label in enumerate(labels):
        colour, shape = names[label].split(" ")
        rng = np.random.default_rng([seed, 0, i])  # one stream per image: independent of the words
        scene = make_scene(
            "single", rng, shapes=shape, colours=colour, background=background, rendition=rendition,
            image_size=image_size,
        )  # fmt: skip
        if word == "true":
            scene.word = shape
        elif word == "wrong":
            scene.word = _word_for(shape, 0.0, word_rng)
        elif word is not None:
            scene.word = word
        images[i] = render(scene, image_size, rng)
        for c in describe(scene, rng):
            captions.append(c)
            caption_image.append(i)
        attributes.append(scene.to_dict())
    meta = {
        "source": "shapes", "set": "single_object", "n_per_class": n_per_class, "seed": seed,
        "image_size": image_size, "rendition": rendition, "word": word, "background": background,
    }  # fmt: skip
    data = PairedData(images, captions, np.asarray(caption_image, dtype=np.int64), attributes, meta)
    return data, labels
