"""Limitation 1 where it shows: a task the captions never state. Which quarter of the image is the object in?

    r = where_task(model, tokenizer)    # zero-shot vs linear probe vs supervised CNN on the quadrant, chance 1/4
    scenes, images, labels = quadrant_set(per_class=10, seed=0, image_size=32)

The paper finds zero-shot CLIP weakest where web captions rarely say what the task asks (counting objects, the
distance to the nearest car, satellite images). The shapes world has such a task: a single object's captions
("a red circle", "a large red circle") never say where it is, although every pixel shows it. The supervised side
sees labels: a TinyCNN with a 2 x 2 pooling grid (global max pooling would throw the position away) and a linear
probe on the model's own frozen features, which can only find the position if the image tower kept it.
"""
from __future__ import annotations

import numpy as np
import torch

from miniclip.data.shapes import make_scene, noun_phrase, render
from miniclip.encode import encode_images
from miniclip.probes.cnn import cnn_predict, train_supervised_cnn
from miniclip.probes.linear import fit_logistic_regression
from miniclip.probes.scoring import Scorer, average, choice_credit, model_scorer, probe_data_seed

QUADRANTS = ("top left", "top right", "bottom left", "bottom right")  # label = index; "left"/"top": small x / y
# The zero-shot captions: the object's own name, then its quadrant (a template ensemble: scores are averaged)
WHERE_TEMPLATES = ("{} in the {}", "a photo of {} in the {}.", "{} in the {} corner")
CENTRE_RANGE = (0.22, 0.34)  # a small object's centre, in the quadrant's corner: 0.16 or more from the middle


def quadrant_of(x: float, y: float) -> int:
    """The QUADRANTS index of a point (x, y) in 0..1 image coordinates (y down)."""
    return 2 * int(y >= 0.5) + int(x >= 0.5)


def quadrant_set(per_class: int, seed: int, image_size: int = 32):
    """per_class small single objects in each quadrant (label-major order), well away from the middle lines.

    Returns (scenes, images uint8 [4 * per_class, S, S, 3], labels int64 [4 * per_class]); colour and shape are
    drawn at random, the centre's distance from the quadrant's outer edges from CENTRE_RANGE.
    """
    labels = np.repeat(np.arange(len(QUADRANTS), dtype=np.int64), per_class)  # [N]
    scenes, images = [], np.empty((len(labels), image_size, image_size, 3), dtype=np.uint8)
    for i, label in enumerate(labels):
        rng = np.random.default_rng([seed, 60, i])
        scene = make_scene("single", rng, sizes="small", image_size=image_size)
        obj = scene.objects[0]
        x, y = rng.uniform(*CENTRE_RANGE, 2)
        obj.x = float(x if QUADRANTS[label].endswith("left") else 1.0 - x)
        obj.y = float(y if QUADRANTS[label].startswith("top") else 1.0 - y)
        scenes.append(scene)
        images[i] = render(scene, image_size, rng)
    return scenes, images, labels


def where_options(scene, template: str = WHERE_TEMPLATES[0]) -> list[str]:
    """The four captions of one scene, in QUADRANTS order: "a red circle in the top left", ..."""
    obj = scene.objects[0]
    return [template.format(noun_phrase(obj.colour, obj.shape), q) for q in QUADRANTS]


def where_task(model, tokenizer, per_class: int = 100, train_per_class: int = 25, cnn_steps: int = 60,
               seed: int = 0, score: Scorer | None = None) -> dict:
    """Which quadrant holds the object: zero-shot against two classifiers trained on labelled images.

      zero_shot       picks among the four captions of WHERE_TEMPLATES naming the object and each quadrant
                      (cosines averaged over the templates; ties share the credit), with `score` if given
      linear_probe    logistic regression on the model's frozen features of 4 * train_per_class labelled images
      supervised_cnn  a TinyCNN (grid = 2) trained on the same labelled images for `cnn_steps` steps
    Accuracies (0..1) on 4 * per_class held-out images; chance 1/4.
    """
    score = score or model_scorer(model, tokenizer)
    size = model.config.image_size
    test_scenes, test, labels = quadrant_set(per_class, probe_data_seed(seed, 60), size)
    _, train, train_labels = quadrant_set(train_per_class, probe_data_seed(seed, 61), size)
    scores = torch.stack([torch.as_tensor(score(test, [where_options(s, t) for s in test_scenes]), dtype=torch.float64)
                          for t in WHERE_TEMPLATES]).mean(dim=0)  # [N, 4]: the template ensemble
    out = {"zero_shot": average(choice_credit(scores, labels))}
    if model is not None and hasattr(model, "encode_image"):  # a scorer alone (no model) has no features to probe
        W, b = fit_logistic_regression(encode_images(model, train), train_labels, num_classes=len(QUADRANTS))
        features = encode_images(model, test).cpu().double()  # [N, D]
        out["linear_probe"] = average((features @ W.t() + b).argmax(dim=1).numpy() == labels)
    cnn = train_supervised_cnn(train, train_labels, len(QUADRANTS), steps=cnn_steps, seed=seed, grid=2)
    out["supervised_cnn"] = average(cnn_predict(cnn, test).numpy() == labels)
    return out | {"n_test": len(labels), "n_train_per_class": train_per_class, "chance": 1 / len(QUADRANTS)}
