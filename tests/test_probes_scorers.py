"""The probes measure what they claim: scorers that cannot see word order sit at chance, a scorer that reads the
scene scores 100%, and the size tables name real arguments of the probes. No model is trained here."""
from __future__ import annotations

import inspect
from collections import Counter
from types import SimpleNamespace

import pytest
import torch

from miniclip import probes
from miniclip.data.shapes import caption_cores

IMAGE_SIZE = 32
NO_MODEL = SimpleNamespace(config=SimpleNamespace(image_size=IMAGE_SIZE))  # all a probe reads of a model


def scene_reader(scenes, images):
    """{image bytes: its scene}, for the images and their left-right mirrors: what an oracle "sees"."""
    seen = {image.tobytes(): scene for image, scene in zip(images, scenes)}
    seen.update({image.tobytes(): scene.mirrored() for image, scene in zip(probes.mirror(images), scenes)})
    return seen


def oracle(seen):
    """score(images, options): 1 for a caption that is true of the image's scene, else 0."""
    def score(images, options):
        return torch.tensor([[float(c in caption_cores(seen[image.tobytes()])) for c in opts]
                             for image, opts in zip(images, options)])
    return score


def bag_of_words(seen):
    """score(images, options): the words a caption shares with the scene's own caption, counted as a multiset;
    word order plays no part."""
    def score(images, options):
        return torch.tensor([[float(sum((Counter(c.split()) & Counter(caption_cores(seen[image.tobytes()])[0].split()))
                                        .values())) for c in opts]
                             for image, opts in zip(images, options)])
    return score


@pytest.fixture(scope="module")
def relation_world():
    scenes, images = probes.relation_scenes(per_kind=10, seed=0, image_size=IMAGE_SIZE)
    return scene_reader(scenes, images)


def test_an_oracle_that_reads_the_scene_gets_every_relation_right(relation_world):
    r = probes.spatial(NO_MODEL, None, per_kind=10, score=oracle(relation_world))
    assert r["n"] == 40
    for key in ("accuracy", "accuracy_left_right", "accuracy_above_below", "four_way", "mirror_accuracy"):
        assert r[key] == 1.0, key
    assert r["mirror_score_change"] == 1.0  # every left-right caption turns false on the mirror


def test_a_bag_of_words_scorer_sits_at_chance_on_swapped_relations(relation_world):
    r = probes.spatial(NO_MODEL, None, per_kind=10, score=bag_of_words(relation_world))
    # the swapped caption has the true caption's words: every pair ties, and a tie is worth half
    assert r["accuracy"] == r["accuracy_left_right"] == r["accuracy_above_below"] == 0.5 == r["chance"]
    # the relation word alone tells "left of" from "above": words are enough for the four-way question
    assert r["four_way"] == 1.0


def test_a_bag_of_words_scorer_sits_at_chance_on_binding():
    scenes, images = probes.draw_scenes("pair", 3 * 5, 0, 40, IMAGE_SIZE)  # binding's set at per_kind=5
    seen = scene_reader(scenes, images)
    assert probes.binding(NO_MODEL, None, per_kind=5, score=bag_of_words(seen))["accuracy"] == 0.5
    assert probes.binding(NO_MODEL, None, per_kind=5, score=oracle(seen))["accuracy"] == 1.0


def test_spatial_asks_the_scorer_three_questions():
    calls = []

    def blind(images, options):  # sees nothing: every option scores the same
        calls.append(len(options))
        return torch.zeros(len(options), len(options[0]))

    r = probes.spatial(NO_MODEL, None, per_kind=2, score=blind)
    assert calls == [8, 8, 4, 4]  # swapped pairs, four-way, the mirror test on the 4 left/right images twice
    assert r["accuracy"] == 0.5 and r["four_way"] == 0.25 and r["mirror_accuracy"] == 0.5


def test_size_tables_name_the_arguments_of_each_probe():
    assert set(probes.FULL_SIZES) == set(probes.SMOKE_SIZES)
    assert all(sizes == {} for sizes in probes.FULL_SIZES.values())  # full sizes are the functions' defaults
    def amount(v):  # a count, or how many values (shots, templates)
        return len(v) if isinstance(v, (tuple, list)) else v

    for name, sizes in probes.SMOKE_SIZES.items():
        parameters = inspect.signature(getattr(probes, name)).parameters
        assert set(sizes) <= set(parameters), name
        for key, value in sizes.items():  # smoke sets are smaller than the full ones
            assert amount(value) < amount(parameters[key].default), (name, key)
