"""The shapes world: structure, determinism, captions that tell the truth, probes' building blocks."""
from collections import Counter

import numpy as np
import pytest

from miniclip.data import render, shapes
from miniclip.data.layout import ALIGN, GAP
from miniclip.data.shapes import INVERSE, Obj, Scene


def test_constants():
    assert shapes.SHAPES == ("circle", "square", "triangle", "star", "cross", "heart")
    assert tuple(shapes.COLOURS) == ("red", "green", "blue", "yellow", "purple", "orange")
    assert shapes.SIZES == ("small", "large")
    assert shapes.RELATIONS == ("to the left of", "to the right of", "above", "below")
    assert shapes.COUNT_WORDS == {2: "two", 3: "three", 4: "four"}
    rgb = np.array([render.COLOUR_RGB[c] for c in shapes.COLOURS], dtype=float)
    distances = np.linalg.norm(rgb[:, None] - rgb[None], axis=-1)
    assert distances[~np.eye(6, dtype=bool)].min() > 100  # well separated


def test_generate_is_deterministic_and_complete():
    a = shapes.generate(300, seed=5)
    b = shapes.generate(300, seed=5)
    c = shapes.generate(300, seed=6)
    assert a.images.shape == (300, 32, 32, 3) and a.images.dtype == np.uint8
    assert a.images.tobytes() == b.images.tobytes() and a.captions == b.captions
    assert a.images.tobytes() != c.images.tobytes()
    counts = np.bincount(a.caption_image, minlength=300)
    assert counts.min() >= 2 and counts.max() <= 3
    for i in range(300):
        assert len(set(a.captions_of(i))) == len(a.captions_of(i))  # different captions
    keys = {"kind", "count", "shapes", "colours", "sizes", "relation", "word"}
    assert all(keys <= set(attrs) for attrs in a.attributes)
    kinds = Counter(x["kind"] for x in a.attributes)
    assert set(kinds) == set(shapes.KINDS) and 0.4 < kinds["single"] / 300 < 0.6
    for knob in ("seed", "image_size", "mix", "word_fraction", "rendition", "holdout", "correlation", "background"):
        assert knob in a.meta
    prefixed = np.mean([cap.startswith("a photo of") for cap in a.captions])
    stopped = np.mean([cap.endswith(".") for cap in a.captions])
    assert 0.4 < prefixed < 0.6 and 0.4 < stopped < 0.6


_strip = shapes.caption_core


def test_captions_tell_the_truth():
    data = shapes.generate(600, seed=2)
    for i, attrs in enumerate(data.attributes):
        scene = Scene([Obj(**o) for o in attrs["objects"]], attrs["relation"], attrs["word"])
        caps = data.captions_of(i)
        assert all(_strip(c) in shapes.caption_cores(scene) for c in caps)
        a = scene.objects[0]
        if attrs["kind"] == "relation":
            b = scene.objects[1]
            rel = attrs["relation"]
            for c in caps:  # the true relation, or its inverse with the arguments swapped, never the swap
                true = f"{a.colour} {a.shape} {rel} a" in c or f"{b.colour} {b.shape} {INVERSE[rel]} a" in c
                assert true, (c, rel)
            # geometry: clearly apart along the axis, aligned across it
            along = (lambda o: o.x) if rel in ("to the left of", "to the right of") else (lambda o: o.y)
            across = (lambda o: o.y) if along(a) == a.x else (lambda o: o.x)
            sign = 1 if rel in ("to the left of", "above") else -1
            ra, rb = a.diameter(1) / 2, b.diameter(1) / 2
            assert sign * (along(b) - along(a)) >= ra + rb + GAP - 1e-9
            assert abs(across(a) - across(b)) <= 2 * ALIGN + 1e-9
        if attrs["kind"] == "count":
            word = shapes.COUNT_WORDS[attrs["count"]]
            assert all(_strip(c).startswith(word + " ") for c in caps)
            assert 2 <= attrs["count"] <= 4 and len(set(zip(attrs["colours"], attrs["shapes"]))) == 1
        if attrs["kind"] == "pair":
            assert attrs["colours"][0] != attrs["colours"][1] and attrs["shapes"][0] != attrs["shapes"][1]
            assert all(" and " in c for c in caps)
        if attrs["kind"] == "single":
            assert all(a.colour in c and a.shape in c for c in caps)


def test_articles_and_plurals():
    assert shapes.noun_phrase("orange", "star") == "an orange star"
    assert shapes.noun_phrase("red", "cross", count=3) == "three red crosses"
    assert shapes.noun_phrase("blue", "circle", "large") == "a large blue circle"


def test_words_in_images():
    data = shapes.generate(400, seed=3, word_fraction=1.0, word_match=0.5)
    singles = [i for i, a in enumerate(data.attributes) if a["kind"] == "single"]
    assert all(data.attributes[i]["word"] in shapes.SHAPES for i in singles)
    assert all(data.attributes[i]["word"] is None for i in range(400) if i not in singles)
    matches = np.mean([data.attributes[i]["word"] == data.attributes[i]["shapes"][0] for i in singles])
    assert 0.35 < matches < 0.65
    for i in singles:
        assert all(_strip(c).endswith(f" with the word {data.attributes[i]['word']}") for c in data.captions_of(i))
    assert render.text_bitmap("star").shape == (5, 15)
    assert render.text_bitmap("triangle", pixels_per_dot=2).shape == (10, 62)


def test_single_object_set_and_typographic_twins():
    names = shapes.class_names()
    assert len(names) == 36 and names[:2] == ["red circle", "red square"] and names[6] == "green circle"
    clean, labels = shapes.single_object_set(2, seed=0)
    assert clean.images.shape == (72, 32, 32, 3) and labels.dtype == np.int64
    assert labels.tolist() == np.repeat(np.arange(36), 2).tolist()
    for i in (0, 13, 71):
        a = clean.attributes[i]
        assert f"{a['colours'][0]} {a['shapes'][0]}" == names[labels[i]] and a["word"] is None
    wrong, labels2 = shapes.single_object_set(2, seed=0, word="wrong")
    assert np.array_equal(labels, labels2)
    for i in range(72):
        a = wrong.attributes[i]
        assert a["word"] in shapes.SHAPES and a["word"] != a["shapes"][0]
        # the same image plus text: only a strip of rows at the top or bottom changes
        rows = np.flatnonzero((wrong.images[i] != clean.images[i]).any(axis=(1, 2)))
        assert len(rows) > 0 and (rows.max() - rows.min() < 6) and (rows.min() <= 1 or rows.max() >= 30)
    same, _ = shapes.single_object_set(1, seed=0, word="true")
    assert all(a["word"] == a["shapes"][0] for a in same.attributes)


def test_make_scene_builders_and_twins():
    rng = np.random.default_rng(0)
    scene = shapes.make_scene("relation", rng, shapes=("star", "triangle"), colours=("green", "yellow"),
                              relation="to the left of", background="plain")  # fmt: skip
    assert scene.kind == "relation" and scene.objects[0].x < scene.objects[1].x
    assert shapes.caption_cores(scene)[0] == "a green star to the left of a yellow triangle"
    mirror = scene.mirrored()
    assert mirror.relation == "to the right of" and mirror.objects[0].x > mirror.objects[1].x
    swapped = scene.swapped()
    assert swapped.relation == "to the right of" and swapped.objects[0].colour == "green"
    img, img_m = shapes.render(scene, 32, rng=7), shapes.render(mirror, 32, rng=7)
    # a plain background and symmetric shapes: the mirrored scene is (almost exactly) the flipped image
    assert np.mean(np.abs(img_m.astype(int) - img[:, ::-1].astype(int)) > 8) < 0.03
    count = shapes.make_scene("count", 1, count=4, shapes="heart", colours="blue")
    assert count.kind == "count" and len(count.objects) == 4 and shapes.caption_cores(count)[0] == "four blue hearts"
    worded = shapes.make_scene("single", 2, shapes="circle", colours="red", word="star")
    assert _strip(shapes.describe(worded, 0)[0]).endswith("red circle with the word star")
    with pytest.raises(ValueError, match="relation must be one of"):
        shapes.make_scene("relation", 0, relation="near")


def test_holdout_and_correlation():
    held = {("red", "circle"), ("blue", "star")}
    data = shapes.generate(1500, seed=4, holdout=held)
    seen = {(c, s) for a in data.attributes for c, s in zip(a["colours"], a["shapes"])}
    assert not (seen & held) and len(seen) == 34
    data = shapes.generate(1500, seed=4, correlation={"colour": "red", "shape": "circle", "strength": 0.9})
    red = [s for a in data.attributes for c, s in zip(a["colours"], a["shapes"]) if c == "red"]
    assert 0.85 < red.count("circle") / len(red) < 0.95
    with pytest.raises(ValueError, match="correlation must be like"):
        shapes.generate(10, correlation={"colour": "red"})
    with pytest.raises(ValueError, match="correlation must be like"):
        shapes.generate(10, correlation={"colour": "red", "shape": "circle", "strength": 1.5})


def test_renditions():
    base = shapes.make_scene("single", 3, shapes="square", colours="red", sizes="large", background="plain")
    images = {}
    for r in shapes.RENDITIONS:
        scene = Scene(base.objects, None, None, "tinted" if r == "background" else "plain", r)
        images[r] = shapes.render(scene, 32, rng=0).astype(int)
    red = np.array(render.COLOUR_RGB["red"])

    def n_red(img, tol=30):
        return int((np.abs(img - red).max(-1) < tol).sum())

    assert n_red(images["normal"]) > 2 * n_red(images["sketch"]) > 0  # outline only
    assert n_red(images["shade"]) == 0  # unseen shades
    assert 0 < n_red(images["texture"]) < n_red(images["normal"])  # stripes or checks
    assert shapes.generate(5, rendition="background").attributes[0]["background"] == "tinted"
    for bg in ("noise", "plain", "gradient", "checker", "mixed"):
        assert shapes.generate(3, background=bg, image_size=64).images.shape == (3, 64, 64, 3)
