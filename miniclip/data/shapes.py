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
numpy Generator: the same seed gives the same bytes. Where objects go is layout.py, how they look render.py.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from tqdm.auto import tqdm

from miniclip.data import PairedData
from miniclip.data.layout import place_apart, place_related
from miniclip.data.render import render

SHAPES = ("circle", "square", "triangle", "star", "cross", "heart")
COLOURS = ("red", "green", "blue", "yellow", "purple", "orange")
SIZES = ("small", "large")
RELATIONS = ("to the left of", "to the right of", "above", "below")
COUNT_WORDS = {2: "two", 3: "three", 4: "four"}
KINDS = ("single", "pair", "relation", "count")
RENDITIONS = ("normal", "sketch", "texture", "shade", "background")
BACKGROUNDS = ("noise", "plain", "gradient", "checker", "mixed", "tinted")

INVERSE = {"to the left of": "to the right of", "to the right of": "to the left of", "above": "below", "below": "above"}

# Object diameter as a fraction of the image side: at 32 px about 10 and 14 pixels (smaller circles and
# squares are hard to tell apart). Two large objects never stand side by side in a relation scene.
SIZE_FRACTION = {"small": 0.30, "large": 0.44}
SIZE_JITTER = (0.92, 1.08)  # each object's diameter is multiplied by a factor drawn from this range
TRAINING_BACKGROUNDS = ("noise", "gradient", "checker")  # what background="mixed" draws from
UNSEEN_BACKGROUND = "tinted"  # used only by the "background" rendition
WORD_SUFFIX = " with the word {}"  # appended to every caption of a word-bearing image


# ------------------------------------------------------------------------------------------------ scenes

@dataclass
class Obj:
    """One shape. x, y: its centre in 0..1 image coordinates (y down); jitter: its size factor (~1, SIZE_JITTER)."""

    shape: str
    colour: str
    size: str
    x: float
    y: float
    jitter: float = 1.0

    def diameter(self, image_size: int) -> float:
        """Diameter in pixels for an image of image_size x image_size."""
        return SIZE_FRACTION[self.size] * self.jitter * image_size


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
        same = all(o.shape == first.shape and o.colour == first.colour for o in self.objects)
        return "count" if same else "pair"

    def to_dict(self) -> dict:
        """Plain facts about the scene (what PairedData.attributes stores per image)."""
        objs = self.objects
        return {"kind": self.kind, "count": len(objs), "shapes": [o.shape for o in objs],
                "colours": [o.colour for o in objs], "sizes": [o.size for o in objs], "relation": self.relation,
                "word": self.word, "background": self.background, "rendition": self.rendition,
                "objects": [dict(vars(o)) for o in objs]}  # Obj holds only scalars: a shallow copy is a copy

    def mirrored(self) -> "Scene":
        """The left-right mirror image; the relation is updated so that the scene stays true."""
        objects = [replace(o, x=1.0 - o.x) for o in self.objects]
        flips = self.relation in ("to the left of", "to the right of")
        return replace(self, objects=objects, relation=INVERSE[self.relation] if flips else self.relation)

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
        elif correlation is not None and c == correlation["colour"]:  # the planted bias: a share of this colour
            others = [x for x in SHAPES if x != correlation["shape"]]  # has that shape, the rest any other
            s = correlation["shape"] if rng.random() < correlation["strength"] else others[rng.integers(len(others))]
        else:
            s = SHAPES[rng.integers(len(SHAPES))]
        if (c, s) not in holdout and (avoid is None or (c != avoid[0] and s != avoid[1])):
            return c, s
    raise ValueError(f"cannot draw a colour/shape for colour={colour} shape={shape} with holdout={sorted(holdout)}")


def make_scene(kind: str = "single", rng=None, *, shapes=None, colours=None, sizes=None, relation: str | None = None,
               count: int | None = None, word: str | None = None, background: str = "noise", rendition: str = "normal",
               holdout=(), correlation: dict | None = None, image_size: int = 32) -> Scene:
    """Build a scene of the given kind; whatever is not specified is drawn from rng (a Generator or a seed).

    kind: "single" (1 object), "pair" (2 different objects, "A and B"), "relation" (A `relation` B),
          "count" (`count` copies, 2-4, of one small shape in one colour).
    shapes, colours, sizes: a value for every object or a sequence, one per object (None = draw it).
    relation: one of RELATIONS (drawn if None). word: text to write on the image (None = no word).
    holdout: (colour, shape) pairs never drawn. correlation: {"colour", "shape", "strength"} bias.
    Positions are drawn so that relations are unambiguous; image_size only sets the 1-pixel margin.
    """
    rng = np.random.default_rng(0 if rng is None else rng)  # a Generator is used as it is
    holdout = {tuple(p) for p in holdout}
    for name, value, allowed in (("kind", kind, KINDS), ("rendition", rendition, RENDITIONS),
                                 ("background", background, BACKGROUNDS)):
        if value not in allowed:
            raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
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

    jitters = rng.uniform(*SIZE_JITTER, n)
    radii = [SIZE_FRACTION[z] * k / 2 for z, k in zip(size_list, jitters)]
    margin = 1.0 / image_size
    if kind == "relation":
        relation = relation if relation is not None else RELATIONS[rng.integers(len(RELATIONS))]
        if relation not in RELATIONS:
            raise ValueError(f"relation must be one of {RELATIONS}, got {relation!r}")
        centres = place_related(rng, radii[0], radii[1], relation, margin)
    else:
        relation = None
        centres = place_apart(rng, radii, margin)
    objects = [
        Obj(shape=s, colour=c, size=z, x=float(x), y=float(y), jitter=float(k))
        for (c, s), z, (x, y), k in zip(pairs, size_list, centres, jitters)
    ]
    return Scene(objects=objects, relation=relation, word=word, background=background, rendition=rendition)


# ------------------------------------------------------------------------------------------------ captions

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
        o, n = objs[0], len(objs)
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
    return caption.removesuffix(".").removeprefix("a photo of ")


def swap_relation(caption: str) -> str | None:
    """'a red circle to the left of a blue star' -> 'a blue star to the left of a red circle' (None if no relation).

    A leading "a photo of " and a final full stop stay where they are. The same words in another order: a
    bag-of-words text encoder cannot tell the two apart, so as an extra negative (train's hard_negatives) it
    forces the model to use word order (NegCLIP, Yuksekgonul et al., 2023).
    """
    stop = "." if caption.endswith(".") else ""  # the full stop stays at the end
    caption = caption[: len(caption) - len(stop)]
    prefix = "a photo of " if caption.startswith("a photo of ") else ""  # so does the prefix
    for rel in (f" {r} " for r in RELATIONS):  # with spaces: a relation between two noun phrases
        if rel in caption:
            left, right = caption[len(prefix):].split(rel, 1)
            return f"{prefix}{right}{rel}{left}{stop}"
    return None


def describe(scene: Scene, rng=None) -> list[str]:
    """2-3 different true captions of a scene. Each is prefixed "a photo of" with probability 1/2 and ends
    with a full stop with probability 1/2 (as zero-shot templates like "a photo of a {}." do)."""
    rng = np.random.default_rng(0 if rng is None else rng)  # a Generator is used as it is
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


# ------------------------------------------------------------------------------------------------ data sets

def _word_for(shape: str, word_match: float, rng: np.random.Generator) -> str:
    """The shape's own name with probability word_match, else another shape's name."""
    others = [x for x in SHAPES if x != shape]
    return shape if rng.random() < word_match else others[rng.integers(len(others))]


def _paired(scenes, n: int, image_size: int, meta: dict) -> PairedData:
    """Render and describe n (scene, rng) pairs in order: images uint8 [n, S, S, 3], attributes scene.to_dict()."""
    images = np.empty((n, image_size, image_size, 3), dtype=np.uint8)
    captions, caption_image, attributes = [], [], []
    for i, (scene, rng) in enumerate(tqdm(scenes, total=n, desc="shapes", disable=n < 20000, leave=False)):
        images[i] = render(scene, image_size, rng)
        described = describe(scene, rng)
        captions += described
        caption_image += [i] * len(described)
        attributes.append(scene.to_dict())
    return PairedData(images, captions, np.asarray(caption_image, dtype=np.int64), attributes, meta)


def generate(n: int, seed: int = 0, image_size: int = 32, *, mix=(0.5, 0.35, 0.15), word_fraction: float = 0.0,
             word_match: float = 0.5, rendition: str = "normal", holdout=(), correlation: dict | None = None,
             background: str = "noise") -> PairedData:
    """n captioned scenes: images uint8 [n, S, S, 3], 2-3 captions each, attributes = scene.to_dict().

    mix: shares of single / two-object / count scenes (two-object scenes are half "A and B" pairs,
         half relations). word_fraction: the share of single-object scenes that carry a word, which names
         their true shape with probability word_match and another shape otherwise.
    rendition: one of RENDITIONS for every image. holdout: (colour, shape) pairs that never appear.
    correlation: e.g. {"colour": "red", "shape": "circle", "strength": 0.9}: 90% of red objects are circles.
    background: "noise" (default), "plain", "gradient", "checker", "mixed" (one of the three textured
    training kinds per image) or "tinted" (the unseen kind). Same arguments -> identical bytes. seed may be a numpy
    Generator, whose stream continues: with g = default_rng(s), generate(a, g) then generate(b, g) = generate(a + b, s).
    """
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16, got {image_size}")
    for name, share in (("word_fraction", word_fraction), ("word_match", word_match)):
        if not 0 <= share <= 1:
            raise ValueError(f"{name} must be a share between 0 and 1, got {share}")
    if correlation is not None and ({"colour", "shape", "strength"} - set(correlation) or correlation["colour"]
                                    not in COLOURS or correlation["shape"] not in SHAPES
                                    or not 0 <= correlation["strength"] <= 1):
        raise ValueError(f"correlation must be like {dict(colour='red', shape='circle', strength=0.9)}, "
                         f"got {correlation}")
    holdout = sorted({tuple(p) for p in holdout})
    mix = np.asarray(mix, dtype=np.float64)
    if mix.shape != (3,) or (mix < 0).any() or mix.sum() <= 0:
        raise ValueError(f"mix must be three non-negative shares (single, two-object, count), got {tuple(mix)}")
    cumulative = np.cumsum(mix / mix.sum())
    rng = np.random.default_rng(seed)

    def scenes():  # one stream for everything, drawn in this order: kind, scene, word, then pixels and captions
        for _ in range(n):
            u = rng.random()
            if u < cumulative[0]:
                kind = "single"
            elif u < cumulative[1]:
                kind = "pair" if rng.random() < 0.5 else "relation"
            else:
                kind = "count"
            scene = make_scene(kind, rng, background=background, rendition=rendition, holdout=holdout,
                               correlation=correlation, image_size=image_size)  # fmt: skip
            if kind == "single" and word_fraction > 0 and rng.random() < word_fraction:
                scene.word = _word_for(scene.objects[0].shape, word_match, rng)
            yield scene, rng

    meta = {"source": "shapes", "n": n, "seed": seed, "image_size": image_size, "mix": [float(m) for m in mix],
            "word_fraction": word_fraction, "word_match": word_match, "rendition": rendition,
            "holdout": [list(p) for p in holdout], "correlation": correlation, "background": background}
    return _paired(scenes(), n, image_size, meta)


def single_object_set(n_per_class: int, seed: int = 0, image_size: int = 32, rendition: str = "normal",
                      word: str | None = None, background: str = "noise") -> tuple[PairedData, np.ndarray]:
    """One object per image, n_per_class images for each of the 36 classes (class-major order).

    Returns (data, labels int64 [36 * n_per_class]), label = index into class_names().
    word: None, a literal word written on every image, "true" (the object's own shape name) or
    "wrong" (another shape name, drawn per image). Objects, sizes, positions and backgrounds do not
    depend on `word`, so a set with words is the same images as the set without, plus the text.
    """
    names = class_names()
    labels = np.repeat(np.arange(len(names), dtype=np.int64), n_per_class)  # [N]
    word_rng = np.random.default_rng([seed, 1])

    def scenes():
        for i, label in enumerate(labels):
            colour, shape = names[label].split(" ")
            rng = np.random.default_rng([seed, 0, i])  # one stream per image: independent of the words
            scene = make_scene("single", rng, shapes=shape, colours=colour, background=background,
                               rendition=rendition, image_size=image_size)  # fmt: skip
            if word == "true":
                scene.word = shape
            elif word == "wrong":
                scene.word = _word_for(shape, 0.0, word_rng)
            elif word is not None:
                scene.word = word
            yield scene, rng

    meta = {"source": "shapes", "set": "single_object", "n_per_class": n_per_class, "seed": seed,
            "image_size": image_size, "rendition": rendition, "word": word, "background": background}
    return _paired(scenes(), len(labels), image_size, meta), labels
