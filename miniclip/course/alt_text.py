"""The alt-text world: the shapes world's images with captions written the way the web writes them.

The shapes grammar hands zero-shot prompts to the model: half of its captions start with "a photo of", and every
template of zeroshot.SHAPES_TEMPLATES is a phrasing it was trained on. Web alt-text is not like that. Nobody
writes "a photo of a red circle." every time; one writes "red circle clipart", "IMG_2031: circle, red",
"my red circle drawing", and tags reuse words of the class names in other senses ("square crop", "5 star").
This module rewrites the captions of shapes.generate from each scene's facts into such phrasings, so that
lesson 5 can measure the paper's prompt engineering (bare label < one template < an ensemble) instead of finding
it built into the data:

    data = alt_text_world(20_000, seed=0)          # PairedData: the same images, alt-text captions
    save_alt_text_cache(runs / "alt-text", 20_000)  # a cache folder: TrainConfig(data=that folder) trains on it
    phrasing_shares(data.captions)                  # {"clipart": 0.08, ...}: no phrasing dominates
    ALT_TEXT_TEMPLATES                              # the twelve phrasings as zero-shot templates: the ensemble

The class names stay those of shapes.class_names() ("red circle"): as a caption on its own a bare label is a
phrasing the model never read, and two of its words are ambiguous here.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from miniclip.data import PairedData, shapes
from miniclip.data.cache import save_paired

# Caption phrasings, {} = a description of the scene ("red circle", "circle, red", "red circle and blue star"),
# {a} = the same with an article where it needs one ("a red circle", "an orange star", "three red circles").
# Each is drawn equally often: "a photo of a red circle." is one phrasing among twelve, as on the web.
PHRASINGS = {
    "clipart": "{} clipart",
    "stock": "stock image of {a} on grey",
    "filename": "IMG_{n}: {}",
    "drawing": "my {} drawing",
    "photo": "a photo of {a}.",
    "icon": "{} icon",
    "sticker": "{} sticker",
    "vector": "free {} vector art",
    "png": "{}.png",
    "doodle": "cute {} doodle lol",
    "noisy": "{} on a noisy background",
    "just": "just {a}",
}
# Web captions carry tags that reuse shape words in another sense, on pictures of any shape: "square crop" is
# the picture's format, "5 star" a rating. Half the captions end with one, so a class word alone is ambiguous.
TAGS = ("square crop", "circle crop", "5 star", "cross-posted", "heart it")
TAG_RATE = 0.5

# Zero-shot prompts for this world. The ensemble is the captions' twelve phrasings written as templates, the way
# the paper's 80 templates imitate web alt-text: "a photo of a {}." is one of them, so the one template and the
# ensemble are on an equal footing (both read in training); only the averaging differs. UNSEEN_TEMPLATES are
# phrasings a student might write that no caption uses.
ALT_TEXT_TEMPLATES = [p.replace("{a}", "a {}").replace("{n}", "4521") for p in PHRASINGS.values()]
UNSEEN_TEMPLATES = ["a picture of a {}.", "an image of a {}.", "a drawing of a {}.", "{} illustration"]
CAPTIONS_PER_IMAGE = 2


def _an(text: str) -> str:
    """'a' or 'an' before text."""
    return "an" if text[0] in "aeiou" else "a"


def describe_scene(scene: dict, rng: np.random.Generator) -> str:
    """A scene's facts (shapes.Scene.to_dict()) -> one description in a varied word order, without an article.

    Single objects: "red circle", "circle, red", "large red circle" or "circle in red"; two objects: "red circle
    and blue star" (either order); counts: "three red circles".
    """
    colours, kinds = scene["colours"], scene["shapes"]
    if scene["kind"] == "single":
        colour, shape, size = colours[0], kinds[0], scene["sizes"][0]
        forms = [f"{colour} {shape}", f"{shape}, {colour}", f"{size} {colour} {shape}", f"{shape} in {colour}"]
        return forms[rng.choice(len(forms), p=[0.4, 0.2, 0.2, 0.2])]
    if scene["kind"] == "count":
        return f"{shapes.COUNT_WORDS[scene['count']]} {colours[0]} {shapes.plural(kinds[0])}"
    order = rng.permutation(2)
    return " and ".join(f"{colours[i]} {kinds[i]}" for i in order)


def alt_caption(scene: dict, rng: np.random.Generator, phrasing: str | None = None) -> str:
    """One alt-text caption of a scene: a description (describe_scene) in a phrasing drawn from PHRASINGS, and
    with probability TAG_RATE a tag: "red circle clipart | 5 star"."""
    phrasing = phrasing or list(PHRASINGS)[rng.integers(len(PHRASINGS))]
    description = describe_scene(scene, rng)
    with_article = description if scene["kind"] == "count" else f"{_an(description)} {description}"
    number = str(int(rng.integers(1000, 10000)))  # a camera's file number
    caption = PHRASINGS[phrasing].replace("{n}", number).replace("{a}", with_article).format(description)
    return caption + f" | {TAGS[rng.integers(len(TAGS))]}" if rng.random() < TAG_RATE else caption


def rewrite_captions(data: PairedData, seed: int = 0, per_image: int = CAPTIONS_PER_IMAGE) -> PairedData:
    """The same images, each with per_image alt-text captions in different phrasings (from data.attributes)."""
    if data.attributes is None:
        raise ValueError("rewrite_captions needs the scenes' facts (data.attributes): pass shapes.generate's output")
    rng = np.random.default_rng([seed, 7])
    captions, caption_image = [], []
    for i in range(data.num_images):
        for phrasing in rng.choice(list(PHRASINGS), size=per_image, replace=False):
            captions.append(alt_caption(data.attributes[i], rng, phrasing))
            caption_image.append(i)
    meta = {**data.meta, "captions": "alt-text", "phrasings": len(PHRASINGS), "per_image": per_image}
    return PairedData(data.images, captions, np.asarray(caption_image), data.attributes, meta)


def alt_text_world(n: int, seed: int = 0, image_size: int = 32, mix=(0.7, 0.2, 0.1)) -> PairedData:
    """n shapes-world scenes (shapes.generate; mostly single objects) with alt-text captions: uint8 images
    [n, S, S, 3], CAPTIONS_PER_IMAGE captions each. The same arguments give the same bytes."""
    return rewrite_captions(shapes.generate(n, seed=seed, image_size=image_size, mix=mix), seed=seed)


def save_alt_text_cache(out_dir, n: int, seed: int = 0, image_size: int = 32) -> Path:
    """Write alt_text_world(n, seed) as a cache folder (its last 1,000 images, or a tenth, are the "val" split of
    load_pairs); a folder that already holds this world is kept as it is. Returns the folder."""
    out_dir = Path(out_dir)
    if not (out_dir / "manifest.json").is_file():
        save_paired(alt_text_world(n, seed, image_size), out_dir, source={"name": "alt-text", "n": n, "seed": seed})
    return out_dir


def phrasing_shares(captions: list[str]) -> dict[str, float]:
    """The share of captions written in each phrasing of PHRASINGS (0..1; "other" for none of them)."""
    def which(caption: str) -> str:
        for name, pattern in PHRASINGS.items():
            head, tail = pattern.replace("{a}", "{}").replace("IMG_{n}: ", "IMG_").split("{}")
            if caption.startswith(head) and caption.split(" | ")[0].endswith(tail):
                return name
        return "other"
    names = [which(c) for c in captions]
    return {name: names.count(name) / max(1, len(names)) for name in [*PHRASINGS, "other"]}
