"""Limitation 1 on a task the captions never state (where the object is), and effective robustness: the labels
match the scenes, an oracle scores 100% and a blind scorer chance, the grid CNN learns where, and the trend line
measures distances above and below it. No CLIP model is trained here."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from miniclip.probes.cnn import TinyCNN
from miniclip.probes.position import QUADRANTS, quadrant_of, quadrant_set, where_options, where_task
from miniclip.probes.robustness import effective_robustness, fit_trend, logit, on_trend, supervised_baselines

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

NO_MODEL = SimpleNamespace(config=SimpleNamespace(image_size=32))  # all where_task reads of a model without features


def test_quadrant_labels_match_where_the_scenes_put_the_object():
    scenes, images, labels = quadrant_set(5, seed=0, image_size=32)
    assert images.shape == (20, 32, 32, 3) and images.dtype == np.uint8
    assert labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5 + [3] * 5
    for scene, label in zip(scenes, labels):
        obj = scene.objects[0]
        assert quadrant_of(obj.x, obj.y) == label
        assert min(abs(obj.x - 0.5), abs(obj.y - 0.5)) >= 0.15  # well away from the middle lines
    # the pixels agree: the object's colour mass sits in the labelled quarter (background noise is grey)
    for image, label in zip(images.astype(float), labels):
        saturation = image.max(axis=-1) - image.min(axis=-1)  # [S, S]
        ys, xs = np.nonzero(saturation > 60)
        assert quadrant_of(xs.mean() / 32, ys.mean() / 32) == label


def test_where_options_name_the_object_and_each_quadrant():
    scenes, _, _ = quadrant_set(1, seed=0)
    obj = scenes[0].objects[0]
    options = where_options(scenes[0])
    assert options == [f"a {obj.colour} {obj.shape} in the {q}".replace("a orange", "an orange") for q in QUADRANTS]


def _oracle(seed: int, per_class: int):
    """score(images, options) reading the test scenes: 1 for the option naming the object's true quadrant."""
    scenes, images, _ = quadrant_set(per_class, seed, 32)
    truth = {image.tobytes(): QUADRANTS[quadrant_of(s.objects[0].x, s.objects[0].y)] for s, image in zip(scenes, images)}

    def score(images, options):
        return torch.tensor([[float(opt.split(" in the ")[1].removesuffix(".").removesuffix(" corner") == truth[im.tobytes()])
                              for opt in opts] for im, opts in zip(images, options)])
    return score


def test_an_oracle_scores_100_percent_a_blind_scorer_chance_and_the_grid_cnn_learns_where():
    from miniclip.probes.scoring import probe_data_seed

    r = where_task(NO_MODEL, None, per_class=8, train_per_class=8, cnn_steps=40,
                   score=_oracle(probe_data_seed(0, 60), 8))
    assert r["zero_shot"] == 1.0 and r["chance"] == 0.25 and r["n_test"] == 32
    assert "linear_probe" not in r  # no model features to probe
    assert r["supervised_cnn"] >= 0.9  # 4 * 8 labels suffice for a CNN that keeps where
    blind = where_task(NO_MODEL, None, per_class=8, train_per_class=2, cnn_steps=2,
                       score=lambda images, options: torch.zeros(len(options), len(options[0])))
    assert blind["zero_shot"] == 0.25  # four-way ties share the credit


def test_global_pooling_cannot_see_where_but_a_grid_can():
    x = torch.zeros(2, 3, 32, 32)
    x[0, :, 8:12, 8:12] = 1.0  # the same patch, top left ...
    x[1, :, 16:20, 16:20] = 1.0  # ... and bottom right: moved by a multiple of the CNN's stride (4), off the border
    torch.manual_seed(0)
    blind, seeing = TinyCNN(4).eval(), TinyCNN(4, grid=2).eval()
    with torch.no_grad():
        assert torch.allclose(blind.features(x).amax(dim=(2, 3))[0], blind.features(x).amax(dim=(2, 3))[1], atol=1e-5)
        assert not torch.allclose(seeing(x)[0], seeing(x)[1], atol=1e-3)


def test_the_trend_line_is_fitted_in_logit_space_and_distances_have_the_right_sign():
    normal = np.array([0.2, 0.4, 0.6, 0.8, 0.95])
    shifted = 1 / (1 + np.exp(-(0.5 * logit(normal) - 1.0)))  # exactly on a logit line
    slope, intercept = fit_trend(normal, shifted)
    assert slope == pytest.approx(0.5) and intercept == pytest.approx(-1.0)
    assert on_trend(0.8, (slope, intercept)) == pytest.approx(shifted[3])
    baselines = {"normal": list(normal), "shifted_mean": list(shifted)}
    expected = float(on_trend(0.9, (0.5, -1.0)))
    shift = {"zero_shot": {"normal": 0.9}, "zero_shot_shifted_mean": expected + 0.2,  # above the line
             "linear_probe": {"normal": 0.9}, "linear_probe_shifted_mean": expected - 0.1,  # below it
             "supervised_cnn": {"normal": 0.99}, "supervised_cnn_shifted_mean": 0.5}
    er = effective_robustness(shift, baselines)
    assert er["r2"] == pytest.approx(1.0)
    assert er["zero_shot"]["effective_robustness"] == pytest.approx(0.2)
    assert er["linear_probe"]["effective_robustness"] == pytest.approx(-0.1)
    assert not er["zero_shot"]["extrapolated"] and er["supervised_cnn"]["extrapolated"]
    assert fit_trend([0.5, 0.5], [0.2, 0.3])[0] == 0.0  # no spread in x: a flat line, not a crash


def test_supervised_baselines_get_better_with_steps():
    b = supervised_baselines(per_class=2, train_per_class=10, steps=(2, 150))
    assert b["steps"] == [2, 150] and len(b["per_rendition"]) == 2
    assert b["normal"][1] > b["normal"][0] + 0.2
    assert all(0 <= v <= 1 for v in b["normal"] + b["shifted_mean"])
