"""The alt-text world (miniclip.course.alt_text): true, varied captions of the shapes world's images."""
import numpy as np
import pytest

from miniclip.course.alt_text import (ALT_TEXT_TEMPLATES, CAPTIONS_PER_IMAGE, PHRASINGS, UNSEEN_TEMPLATES,
                                      alt_text_world, phrasing_shares, rewrite_captions, save_alt_text_cache)
from miniclip.data import shapes
from miniclip.data.sources import load_pairs


@pytest.fixture(scope="module")
def world():
    return alt_text_world(600, seed=3)


def test_same_images_as_the_shapes_world_with_new_captions(world):
    plain = shapes.generate(600, seed=3, mix=(0.7, 0.2, 0.1))
    assert np.array_equal(world.images, plain.images)
    assert np.bincount(world.caption_image).tolist() == [CAPTIONS_PER_IMAGE] * 600
    grammar = set(plain.captions)
    kept = np.mean([c in grammar for c in world.captions])  # only the "a photo of a red circle." phrasing
    assert 0 < kept < 0.12


def test_no_phrasing_dominates_and_every_caption_has_one(world):
    shares = phrasing_shares(world.captions)
    assert shares["other"] == 0
    assert max(shares.values()) < 0.15  # twelve phrasings, about 1/12 each
    assert min(shares[name] for name in PHRASINGS) > 0.03


def test_an_image_gets_different_phrasings(world):
    for i in range(50):
        first, second = world.captions_of(i)
        assert phrasing_shares([first]) != phrasing_shares([second])


def test_captions_are_true(world):
    for i in range(200):
        scene = world.attributes[i]
        for caption in world.captions_of(i):
            for colour, shape in zip(scene["colours"], scene["shapes"]):
                assert colour in caption
                assert shape in caption or shapes.plural(shape) in caption


def test_bare_labels_never_are_captions_and_class_words_are_ambiguous(world):
    assert not set(shapes.class_names()) & set(world.captions)
    no_square = [c for c, i in zip(world.captions, world.caption_image) if "square" not in world.attributes[i]["shapes"]]
    assert any("square" in c for c in no_square)  # "square crop" on a picture of a circle
    no_star = [c for c, i in zip(world.captions, world.caption_image) if "star" not in world.attributes[i]["shapes"]]
    assert any("star" in c for c in no_star)  # "5 star": a rating


def test_articles_and_templates():
    world = alt_text_world(300, seed=0)
    assert not any(c.startswith(("a photo of a three", "just a two", "a photo of a orange")) for c in world.captions)
    assert all(t.count("{}") == 1 for t in ALT_TEXT_TEMPLATES + UNSEEN_TEMPLATES)


def test_the_ensemble_is_the_twelve_phrasings_and_the_unseen_templates_none():
    shares = phrasing_shares([t.format("red circle") for t in ALT_TEXT_TEMPLATES])
    assert shares["other"] == 0 and all(shares[name] == 1 / len(PHRASINGS) for name in PHRASINGS)
    assert "a photo of a {}." in ALT_TEXT_TEMPLATES  # the one template is one of the ensemble's phrasings
    assert phrasing_shares([t.format("red circle") for t in UNSEEN_TEMPLATES])["other"] == 1


def test_deterministic():
    assert alt_text_world(50, seed=1).captions == alt_text_world(50, seed=1).captions
    assert alt_text_world(50, seed=1).captions != alt_text_world(50, seed=2).captions


def test_rewrite_needs_the_scenes():
    data = shapes.generate(5)
    data.attributes = None
    with pytest.raises(ValueError, match="attributes"):
        rewrite_captions(data)


def test_cache_round_trip(tmp_path):
    folder = save_alt_text_cache(tmp_path / "alt", 120, seed=0)
    train = load_pairs(str(folder), "train")
    world = alt_text_world(120, seed=0)
    assert train.num_images == 108  # a tenth held out as "val"
    assert train.captions == world.subset(np.arange(108)).captions
    assert save_alt_text_cache(folder, 120, seed=0) == folder  # a second call keeps the folder


def test_paired_counts_is_the_exact_sign_test():
    from miniclip.course.lesson_plots import paired_counts

    a = np.array([True] * 10 + [False] * 5)
    b = np.array([True] * 5 + [False] * 5 + [True] * 5)
    assert paired_counts(a, b) == (5, 5, 1.0)  # 5 against 5: no evidence either way
    only_b = np.zeros(10, bool), np.ones(10, bool)
    assert paired_counts(*only_b) == (0, 10, 2 / 2**10)  # 10 of 10 one way: p = 2 * (1/2)^10
