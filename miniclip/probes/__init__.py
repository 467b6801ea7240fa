"""Probes: the limitations the CLIP paper lists (section 6), turned into numbers on the shapes world.

The paper names nine limitations. Each section below takes one, says what the paper says, and measures it on
a model trained on the captioned shapes world, where every image is built from an explicit scene: we can draw
exactly the image a probe needs, change one thing (swap two objects, mirror the picture, write a word on it)
and know the right answer. Every probe returns a plain dict of numbers with the accuracy expected by
guessing under "chance", so a result always reads against a baseline.

    results = run_probes(model, tokenizer)                 # every single-model probe; ~1 minute on a CPU
    results["2_spatial"]        # {"accuracy": 0.52, "chance": 0.5, ...}: bag-of-words relations
    typographic(model, tokenizer)["flip_rate"]             # how often a written word changes the prediction

From a shell: `miniclip probe RUN_DIR --json [--smoke]`. The probe models a lesson needs (with and without
hard negatives, with words in the images, with a planted bias) are in RECIPES; `probe_config(name)` turns one
into a TrainConfig for miniclip.train.train / load_or_train.

Conventions: accuracies and rates are fractions (0..1); "n_*" are counts; every probe is deterministic for a
given `seed` (its images come from seeded generators that never overlap the training or validation data);
`smoke=True` uses tiny sets (for tests: the whole of run_probes takes seconds).
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from miniclip.data import shapes
from miniclip.data.shapes import (COLOURS, RELATIONS, RENDITIONS, SHAPES, caption_core, class_names, make_scene,
                                  noun_phrase, render)
from miniclip.encode import encode_images, encode_texts, prepare_images
from miniclip.probes.linear import few_shot_curve, fit_logistic_regression
from miniclip.zeroshot import SHAPES_TEMPLATES, zeroshot_classifier

# ----------------------------------------------------------------------------------------------------------------
# The probe models: training recipes (overrides of miniclip.train.TrainConfig)

# Two (colour, shape) combinations that the probe models never see in training: "describe an unseen composition".
HOLDOUT = (("blue", "heart"), ("yellow", "cross"))
# The planted spurious correlation of the "bias" model: 90% of red training objects are circles.
BIAS = {"colour": "red", "shape": "circle", "strength": 0.9}

# Each recipe is shapes-tiny's (1000 steps of 256 pairs; ~75 s on 2 idle CPU cores) without the HOLDOUT
# combinations and with one change. Relations take longer: the grammar describes "A left of B" also as "B right of
# A", so no bag of words separates a caption from its argument-swapped twin, and word order has to be learned as
# an interaction of order and relation word. Measured (relation probe, true vs swapped caption): with hard
# negatives a 1500-step run stays at chance for ~1000 steps and ends at 58%; a 3000-step run ends at 99.5%; without
# them it stays at chance (52%). So the relation pair trains 3000 steps (~4 minutes on 2 idle cores).
RELATION_STEPS = 3000
RECIPES = {
    # the plain contrastive recipe, as long as the hard-negative run; its evaluations give a learning curve
    "base": dict(steps=RELATION_STEPS, hard_negatives=False, eval_every=500, shapes_options={"holdout": HOLDOUT}),
    # + each relation caption's argument-swapped twin as an extra negative (NegCLIP): word order matters
    "hard_negatives": dict(steps=RELATION_STEPS, hard_negatives=True, eval_every=0,
                           shapes_options={"holdout": HOLDOUT}),
    # + 65% of the single-object images carry their shape's name, written on them: the model learns to read, and
    #   as the word is always right, reading is a shortcut it comes to trust (the typographic attack)
    "words": dict(hard_negatives=False, eval_every=0, word_fraction=0.65,
                  shapes_options={"holdout": HOLDOUT, "word_match": 1.0}),
    # + a planted correlation (limitation 8): red objects are mostly circles
    "bias": dict(hard_negatives=False, eval_every=0, shapes_options={"holdout": HOLDOUT, "correlation": BIAS}),
}
SMOKE_RECIPE = dict(steps=40, num_images=3000, eval_every=0)  # what probe_config(..., smoke=True) changes

# Limitation 5 (data efficiency) needs runs on different numbers of distinct images, with the same number of steps.
# Measured at 600 steps (2 idle cores, ~50 s each): 300 images -> 21% zero-shot top-1, 1000 -> 32%, 3000 -> 62%,
# 50000 -> 72%. At 300 steps every size sat near 25%: too short a run to tell what the data is worth.
DATA_EFFICIENCY = {"num_images": (300, 1000, 3000, 50000), "steps": 600, "recipe": "base"}


def probe_config(name: str, smoke: bool = False, **overrides):
    """RECIPES[name] as a TrainConfig of the shapes-tiny preset (smoke: 40 steps on 3000 images, seconds).

    overrides: any TrainConfig field, applied last (e.g. steps=600, num_images=3000 for DATA_EFFICIENCY).
    """
    from miniclip.train import TrainConfig

    if name not in RECIPES:
        raise ValueError(f"unknown probe recipe {name!r}; known: {', '.join(RECIPES)}")
    return TrainConfig.for_preset("shapes-tiny", **{**RECIPES[name], **(SMOKE_RECIPE if smoke else {}), **overrides})


# ----------------------------------------------------------------------------------------------------------------
# Sizes and seeds

# Images per probe: "full" gives a standard error of about 2-3 points; "smoke" only checks that things run.
SIZES = {
    "full": dict(word_order_images=300, per_kind=100, per_class=20, train_per_class=50, few_shot_per_class=16, val_per_class=3,
                 pool_images=1000, holdout_images=50, cnn_steps=300, ks=(1, 2, 4, 8, 16), seeds=(0, 1, 2),
                 subsets=40),
    "smoke": dict(word_order_images=20, per_kind=4, per_class=1, train_per_class=2, few_shot_per_class=2, val_per_class=1,
                  pool_images=24, holdout_images=2, cnn_steps=5, ks=(1, 2), seeds=(0,), subsets=3),
}


def _size(smoke: bool, key: str):
    return SIZES["smoke" if smoke else "full"][key]


def _stream(seed: int, k: int) -> int:
    """The data seed of probe set k: far from training (0) and validation/test (~1e6, 2e6) seeds."""
    return 7_000_000 + 1000 * seed + k


def _scenes(kind: str, n: int, seed: int, stream: int, image_size: int, **fixed):
    """n scenes of one kind and their images uint8 [n, S, S, 3]; scene i comes from rng [seed, stream, i].

    fixed: make_scene keywords; a callable value is called with i (e.g. relation=lambda i: RELATIONS[i % 4]).
    """
    scenes, images = [], np.empty((n, image_size, image_size, 3), dtype=np.uint8)
    for i in range(n):
        rng = np.random.default_rng([seed, stream, i])
        kw = {k: v(i) if callable(v) else v for k, v in fixed.items()}
        scene = make_scene(kind, rng, image_size=image_size, **kw)
        scenes.append(scene)
        images[i] = render(scene, image_size, rng)
    return scenes, images


# ----------------------------------------------------------------------------------------------------------------
# Scoring helpers: pick a caption, classify zero-shot


@torch.no_grad()
def caption_scores(model, tokenizer, images, options: list[list[str]]) -> torch.Tensor:
    """Cosine similarity of each image with each of its candidate captions: images [N, S, S, 3] -> [N, M].

    options: N lists of M captions (image i is scored against options[i]). Texts are encoded once each.
    """
    image_features = encode_images(model, images).cpu()  # [N, D]
    unique = sorted({c for opts in options for c in opts})
    position = {c: j for j, c in enumerate(unique)}
    text_features = encode_texts(model, tokenizer, unique).cpu()  # [U, D]
    index = torch.tensor([[position[c] for c in opts] for opts in options])  # [N, M]
    return (image_features[:, None, :] * text_features[index]).sum(dim=-1)  # [N, M]


def choice_credit(scores: torch.Tensor, answer) -> np.ndarray:
    """scores [N, M], answer int [N] -> credit float [N]: 1 if the answer scores highest, 1/t if t options tie."""
    answer = torch.as_tensor(answer, dtype=torch.long)
    tied = scores == scores.max(dim=1, keepdim=True).values  # [N, M]
    credit = tied[torch.arange(len(scores)), answer].float() / tied.sum(dim=1).float()
    return credit.numpy().astype(np.float64)


def _mean(x) -> float:
    """The mean of a list, array or tensor of numbers or booleans as a float (0.0 when empty)."""
    x = np.asarray(x, dtype=np.float64)
    return float(x.mean()) if x.size else 0.0


def _classify(features: torch.Tensor, classifier: torch.Tensor) -> torch.Tensor:
    """features [N, D] @ classifier [D, K] -> predicted class indices [N]."""
    return (features.cpu() @ classifier.cpu()).argmax(dim=1)


# ----------------------------------------------------------------------------------------------------------------
# A supervised baseline: a small CNN trained on labels (limitations 1 and 3)


class TinyCNN(nn.Module):
    """Three 3x3 convolutions (16, 32, 64 channels; the last two stride 2), global max pooling, a linear layer.

    Max pooling asks "is this pattern anywhere in the image?", which suits objects at random positions: with
    average pooling the same network learns shapes far more slowly.
    """

    def __init__(self, num_classes: int, channels=(16, 32, 64)):
        super().__init__()
        layers, c_in = [], 3
        for i, c in enumerate(channels):
            layers += [nn.Conv2d(c_in, c, 3, stride=1 if i == 0 else 2, padding=1), nn.BatchNorm2d(c), nn.GELU()]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, num_classes)
        self.image_size = 32

    def forward(self, x):  # x: [B, 3, 32, 32] normalised -> logits [B, K]
        return self.head(self.features(x).amax(dim=(2, 3)))


def train_supervised_cnn(images, labels, num_classes: int, steps: int = 300, batch_size: int = 64,
                         lr: float = 5e-3, seed: int = 0) -> TinyCNN:
    """Train a TinyCNN with cross-entropy on labelled images (uint8 [N, S, S, 3], labels [N]); seeded, CPU.

    This is the "supervised model" of effective robustness: it sees the labels of the train images, never a
    caption. 300 steps on 50 images per class: ~96% on held-out normal images, ~7 s of one CPU core.
    """
    with torch.random.fork_rng(devices=[]):  # leave the caller's random state alone
        torch.manual_seed(seed)
        model = TinyCNN(num_classes)
        x = prepare_images(images, model.image_size)  # [N, 3, 32, 32]
        y = torch.as_tensor(labels, dtype=torch.long)
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
        g = torch.Generator().manual_seed(seed)
        model.train()
        for step in range(steps):
            idx = torch.randint(len(x), (min(batch_size, len(x)),), generator=g)
            for group in optimizer.param_groups:  # cosine decay
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
            loss = F.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


@torch.no_grad()
def cnn_predict(cnn: TinyCNN, images, batch_size: int = 512) -> torch.Tensor:
    """Predicted class indices [N] of a TinyCNN on uint8 images [N, S, S, 3]."""
    return torch.cat([cnn(prepare_images(images[i:i + batch_size], cnn.image_size)).argmax(dim=1)
                      for i in range(0, len(images), batch_size)])


def _train_set(model, smoke: bool, seed: int):
    """The labelled single-object set of the supervised baselines: (images [N, S, S, 3], labels [N])."""
    data, labels = shapes.single_object_set(_size(smoke, "train_per_class"), seed=_stream(seed, 1),
                                            image_size=model.config.image_size)
    return data.images, labels


def _supervised_cnn(model, smoke: bool, seed: int) -> TinyCNN:
    images, labels = _train_set(model, smoke, seed)
    return train_supervised_cnn(images, labels, len(class_names()), steps=_size(smoke, "cnn_steps"), seed=seed)


# ----------------------------------------------------------------------------------------------------------------
# Limitation 1: zero-shot CLIP is below the task-specific state of the art


def supervised_vs_zeroshot(model, tokenizer, smoke: bool = False, seed: int = 0, cnn: TinyCNN | None = None) -> dict:
    """Zero-shot top-1 against supervised classifiers trained on labelled images of the same 36 classes.

    The paper: zero-shot CLIP is competitive with a linear classifier on ResNet-50 features, but well below the
    state of the art of most tasks. Here the supervised side is (a) logistic regression on the model's own
    frozen features of `train_per_class` labelled images per class (the "linear probe") and (b) a TinyCNN
    trained on the same labelled images. Returns accuracies (0..1) on a held-out single-object set.
    """
    size = model.config.image_size
    test, test_labels = shapes.single_object_set(_size(smoke, "per_class"), seed=_stream(seed, 2), image_size=size)
    train_images, train_labels = _train_set(model, smoke, seed)
    classifier = zeroshot_classifier(model, tokenizer, class_names(), SHAPES_TEMPLATES)
    test_features = encode_images(model, test.images)
    W, b = fit_logistic_regression(encode_images(model, train_images), train_labels, num_classes=len(class_names()))
    cnn = cnn if cnn is not None else _supervised_cnn(model, smoke, seed)
    labels = torch.as_tensor(test_labels)
    return {
        "zero_shot": _mean(_classify(test_features, classifier) == labels),
        "linear_probe": _mean(((test_features.cpu().double() @ W.t() + b).argmax(dim=1) == labels)),
        "supervised_cnn": _mean(cnn_predict(cnn, test.images) == labels),
        "n_train_per_class": _size(smoke, "train_per_class"),
        "n_test": len(labels),
        "chance": 1 / len(class_names()),
    }


# ----------------------------------------------------------------------------------------------------------------
# Limitation 2: weak on systematic tasks - counting, spatial relations, attribute binding - and fine-grained ones


def counting(model, tokenizer, smoke: bool = False, seed: int = 0) -> dict:
    """Pick the right number word: an image of k identical objects (k = 2, 3, 4) against the captions
    "two / three / four {colour} {shape}s". Chance 1/3.

    The paper: CLIP struggles with systematic tasks such as counting the objects in an image.
    Returns overall accuracy and accuracy_2 / _3 / _4 per true count.
    """
    n = _size(smoke, "per_kind")
    counts = (2, 3, 4)
    scenes, images = _scenes("count", n * len(counts), seed, 20, model.config.image_size,
                             count=lambda i: counts[i % len(counts)])
    options, answer = [], []
    for s in scenes:
        o = s.objects[0]
        options.append([noun_phrase(o.colour, o.shape, count=k) for k in counts])
        answer.append(counts.index(len(s.objects)))
    credit = choice_credit(caption_scores(model, tokenizer, images, options), answer)
    answer = np.asarray(answer)
    out = {"accuracy": _mean(credit)}
    out.update({f"accuracy_{k}": _mean(credit[answer == j]) for j, k in enumerate(counts)})
    return out | {"n": len(credit), "chance": 1 / len(counts)}


def relation_caption(scene, relation: str | None = None, swap: bool = False) -> str:
    """ "a red circle to the left of a blue star" for a two-object scene (objects[0] `relation` objects[1]).

    relation: another relation word to use (default: the scene's own); swap: the arguments trade places,
    "a blue star to the left of a red circle" - the same words in another order.
    """
    a, b = scene.objects
    pa, pb = noun_phrase(a.colour, a.shape), noun_phrase(b.colour, b.shape)
    if swap:
        pa, pb = pb, pa
    return f"{pa} {relation or scene.relation} {pb}"


def mirror(images: np.ndarray) -> np.ndarray:
    """Left-right mirror images of uint8 [N, S, S, 3] (a copy): pixel (y, x) goes to (y, S - 1 - x)."""
    return np.ascontiguousarray(images[:, :, ::-1])


def spatial(model, tokenizer, smoke: bool = False, seed: int = 0) -> dict:
    """Spatial relations: the true caption "A left of B" against the argument-swapped "B left of A". Chance 0.5.

    The paper lists spatial relations (distance) among the systematic tasks CLIP does poorly on. The swapped
    caption has exactly the words of the true one, so a model that treats a caption as a bag of words scores
    both the same and sits at chance; hard negatives (NegCLIP) teach word order. Here word order is harder than a
    first-order cue: the grammar also says "B to the right of A" for the same image, so the words of the swapped
    caption ("B left of A") come with the right answer too, and only order and relation word together decide
    (RECIPES, RELATION_STEPS). Reported:
      accuracy, accuracy_left_right, accuracy_above_below   true vs swapped caption (chance 0.5)
      four_way                   "A left of / right of / above / below B": pick the true one (chance 0.25)
      mirror_accuracy            left/right scenes: does the true caption score higher on the image than on its
                                 left-right mirror, where it is false? (chance 0.5, What'sUp's mirror test)
      mirror_score_change        mean |cos(image, caption) - cos(mirrored image, caption)|: does it change at all?
    """
    n = _size(smoke, "per_kind")
    scenes, images = _scenes("relation", n * len(RELATIONS), seed, 30, model.config.image_size,
                             relation=lambda i: RELATIONS[i % len(RELATIONS)])
    relations = np.array([s.relation for s in scenes])
    # true vs swapped caption: the true one is always option 0 (ties share the credit, so order cannot help)
    scores = caption_scores(model, tokenizer, images, [[relation_caption(s), relation_caption(s, swap=True)]
                                                       for s in scenes])
    credit = choice_credit(scores, np.zeros(len(scenes), dtype=int))
    horizontal = np.isin(relations, ["to the left of", "to the right of"])
    four = caption_scores(model, tokenizer, images, [[relation_caption(s, r) for r in RELATIONS] for s in scenes])
    four_credit = choice_credit(four, [RELATIONS.index(r) for r in relations])
    # the mirror test: the caption stays, the image is mirrored (its left-right relation is now false)
    left_right = [s for s, h in zip(scenes, horizontal) if h]
    captions = [[relation_caption(s)] for s in left_right]
    original = caption_scores(model, tokenizer, images[horizontal], captions)[:, 0]
    mirrored = caption_scores(model, tokenizer, mirror(images[horizontal]), captions)[:, 0]
    mirror_credit = choice_credit(torch.stack([original, mirrored], dim=1), np.zeros(len(left_right), dtype=int))
    return {
        "accuracy": _mean(credit),
        "accuracy_left_right": _mean(credit[horizontal]),
        "accuracy_above_below": _mean(credit[~horizontal]),
        "four_way": _mean(four_credit),
        "chance_four_way": 1 / len(RELATIONS),
        "mirror_accuracy": _mean(mirror_credit),
        "mirror_score_change": float((original - mirrored).abs().mean()) if len(left_right) else 0.0,
        "n": len(scenes),
        "chance": 0.5,
    }


WORD_ORDER_PERTURBATIONS = ("shuffle_all", "reverse_trigrams", "shuffle_within_trigrams", "swap_halves")


def word_order_perturbations(caption: str, rng) -> dict[str, str]:
    """Four reorderings of a caption's words, after ARO's COCO-Order (Yuksekgonul et al., 2023): the same words,
    so a bag-of-words model scores each exactly like the caption."""
    w = caption.strip().rstrip(".").split()
    trigrams = [w[i:i + 3] for i in range(0, len(w), 3)]
    return {
        "shuffle_all": " ".join(rng.permutation(w).tolist()),
        "reverse_trigrams": " ".join(x for t in trigrams[::-1] for x in t),
        "shuffle_within_trigrams": " ".join(x for t in trigrams for x in rng.permutation(t).tolist()),
        "swap_halves": " ".join(w[len(w) // 2:] + w[:len(w) // 2]),
    }


def _held_out_pairs(model, smoke: bool, seed: int):
    """Held-out shapes scenes with their captions (the test split), sized for word_order."""
    from miniclip.data.sources import load_pairs

    n = 4 * _size(smoke, "word_order_images")  # short captions have no four distinct reorderings: draw more
    return load_pairs("shapes", "test", image_size=model.config.image_size, n=n, seed=seed)


def word_order(model, tokenizer, data, max_images: int = 500, seed: int = 0) -> dict:
    """Word order on any captioned data (shapes or COCO): the true caption against four reorderings of its words.

    data: PairedData of held-out images; each image's first caption and its WORD_ORDER_PERTURBATIONS (images whose
    caption has a reordering equal to itself are skipped). Returns accuracy (the true caption scores highest of 5;
    chance 0.2), per_perturbation {name: true vs that one, chance 0.5}, n.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(data.num_images)
    kept, options = [], []
    for i in order:
        caption = data.captions_of(int(i))[0].strip().rstrip(".")
        reordered = word_order_perturbations(caption, rng)
        if caption not in reordered.values() and len(set(reordered.values())) == len(reordered):
            kept.append(int(i))
            options.append([caption, *reordered.values()])
        if len(kept) == max_images:
            break
    if not kept:
        return {"note": "no caption has four distinct reorderings", "n": 0, "chance": 0.2}
    scores = caption_scores(model, tokenizer, data.images[kept], options)  # [n, 5]
    per = {name: _mean(choice_credit(scores[:, [0, j + 1]], np.zeros(len(kept), dtype=int)))
           for j, name in enumerate(WORD_ORDER_PERTURBATIONS)}
    return {"accuracy": _mean(choice_credit(scores, np.zeros(len(kept), dtype=int))), "per_perturbation": per,
            "n": len(kept), "chance": 0.2, "chance_per_perturbation": 0.5}


def binding_captions(scene) -> tuple[str, str]:
    """(true, colour-swapped) captions of a two-object scene: "a red circle and a blue star" and
    "a blue circle and a red star" - same words, the colours bound to the other shapes."""
    a, b = scene.objects
    true = f"{noun_phrase(a.colour, a.shape)} and {noun_phrase(b.colour, b.shape)}"
    swapped = f"{noun_phrase(b.colour, a.shape)} and {noun_phrase(a.colour, b.shape)}"
    return true, swapped


def binding(model, tokenizer, smoke: bool = False, seed: int = 0) -> dict:
    """Attribute binding: the true caption against the colour-swapped one (ARO's VG-Attribution). Chance 0.5.

    Two objects of different colours and shapes; both captions contain the same colour and shape words, so
    only a model that binds each colour to its shape can tell them apart.
    """
    scenes, images = _scenes("pair", _size(smoke, "per_kind") * 3, seed, 40, model.config.image_size)
    scores = caption_scores(model, tokenizer, images, [list(binding_captions(s)) for s in scenes])
    credit = choice_credit(scores, np.zeros(len(scenes), dtype=int))
    return {"accuracy": _mean(credit), "n": len(scenes), "chance": 0.5}


def fine_grained(model, tokenizer, smoke: bool = False, seed: int = 0) -> dict:
    """Fine-grained distinctions (the paper: car models, flower species, aircraft variants), shapes-style:

      size           "a small red circle" vs "a large red circle" (chance 0.5)
      close_colours  an orange, red or yellow object: pick its colour among those three (orange lies between
                     red and yellow; chance 1/3)
      shade_colour   a dark or pastel shade never seen in training: pick its colour among all six (chance 1/6),
                     against normal_colour, the same question on the training colours
    """
    size = model.config.image_size
    n = _size(smoke, "per_kind") * 3
    # size
    scenes, images = _scenes("single", n, seed, 50, size)
    options = [[noun_phrase(s.objects[0].colour, s.objects[0].shape, z) for z in shapes.SIZES] for s in scenes]
    size_credit = choice_credit(caption_scores(model, tokenizer, images, options),
                                [shapes.SIZES.index(s.objects[0].size) for s in scenes])
    # close colours
    close = ("red", "orange", "yellow")
    scenes, images = _scenes("single", n, seed, 51, size, colours=lambda i: close[i % 3])
    options = [[noun_phrase(c, s.objects[0].shape) for c in close] for s in scenes]
    close_credit = choice_credit(caption_scores(model, tokenizer, images, options),
                                 [close.index(s.objects[0].colour) for s in scenes])
    # unseen shades vs the training colours: the same objects, rendered both ways
    colour_credit = {}
    for rendition in ("normal", "shade"):
        scenes, images = _scenes("single", n, seed, 52, size, colours=lambda i: COLOURS[i % len(COLOURS)],
                                 rendition=rendition)
        options = [[noun_phrase(c, s.objects[0].shape) for c in COLOURS] for s in scenes]
        colour_credit[rendition] = choice_credit(caption_scores(model, tokenizer, images, options),
                                                 [COLOURS.index(s.objects[0].colour) for s in scenes])
    return {
        "size": _mean(size_credit), "chance_size": 0.5,
        "close_colours": _mean(close_credit), "chance_close_colours": 1 / 3,
        "shade_colour": _mean(colour_credit["shade"]), "normal_colour": _mean(colour_credit["normal"]),
        "chance_colour": 1 / len(COLOURS),
        "n": n, "chance": 0.5,
    }


# ----------------------------------------------------------------------------------------------------------------
# Limitation 3: poor generalisation to truly out-of-distribution data


def distribution_shift(model, tokenizer, smoke: bool = False, seed: int = 0, cnn: TinyCNN | None = None) -> dict:
    """Top-1 on the 36 classes for every rendition (normal, sketch, texture, shade, background), three ways:

      zero_shot       the model's zero-shot classifier (prompt ensemble of SHAPES_TEMPLATES)
      linear_probe    logistic regression on the model's features, fitted on normal images only
      supervised_cnn  a TinyCNN trained on the labels of the same normal images
    Each is {rendition: accuracy}. "Effective robustness" (the paper, section 3.3) compares accuracy under
    shift with in-distribution accuracy: plot shifted against normal for each method. The paper: zero-shot
    CLIP is far more robust than supervised ImageNet models on natural shifts, yet fails on truly
    out-of-distribution data (MNIST: 88%).
    """
    size = model.config.image_size
    classifier = zeroshot_classifier(model, tokenizer, class_names(), SHAPES_TEMPLATES)
    train_images, train_labels = _train_set(model, smoke, seed)
    W, b = fit_logistic_regression(encode_images(model, train_images), train_labels, num_classes=len(class_names()))
    cnn = cnn if cnn is not None else _supervised_cnn(model, smoke, seed)
    out = {"zero_shot": {}, "linear_probe": {}, "supervised_cnn": {}}
    for rendition in RENDITIONS:
        data, labels = shapes.single_object_set(_size(smoke, "per_class"), seed=_stream(seed, 3), image_size=size,
                                                rendition=rendition)
        labels = torch.as_tensor(labels)
        features = encode_images(model, data.images).cpu()
        out["zero_shot"][rendition] = _mean(_classify(features, classifier) == labels)
        out["linear_probe"][rendition] = _mean((features.double() @ W.t() + b).argmax(dim=1) == labels)
        out["supervised_cnn"][rendition] = _mean(cnn_predict(cnn, data.images) == labels)
    shifted = [r for r in RENDITIONS if r != "normal"]
    for method in ("zero_shot", "linear_probe", "supervised_cnn"):
        out[f"{method}_shifted_mean"] = _mean([out[method][r] for r in shifted])
    return out | {"n_per_rendition": len(labels), "chance": 1 / len(class_names())}


def typographic(model, tokenizer, smoke: bool = False, seed: int = 0, word: str = "wrong") -> dict:
    """The typographic attack: write another shape's name on the image and classify zero-shot again.

    The paper (and the follow-up "Multimodal neurons"): CLIP reads, so an apple labelled "iPod" becomes an iPod.
    The same images are classified without and with the word (single_object_set keeps everything else equal):
      accuracy_clean, accuracy_attacked   top-1 on the 36 "colour shape" classes
      flip_rate          of the images right without the word, the share whose prediction changes with it
      follows_word_rate  the share of attacked images predicted as the written shape (chance 1/6 by shape)
    word: "wrong" (another shape, drawn per image) or "true" (the object's own shape: reading then helps).
    """
    size = model.config.image_size
    classifier = zeroshot_classifier(model, tokenizer, class_names(), SHAPES_TEMPLATES)
    clean, labels = shapes.single_object_set(_size(smoke, "per_class"), seed=_stream(seed, 4), image_size=size)
    attacked, _ = shapes.single_object_set(_size(smoke, "per_class"), seed=_stream(seed, 4), image_size=size, word=word)
    labels = torch.as_tensor(labels)
    before = _classify(encode_images(model, clean.images), classifier)
    after = _classify(encode_images(model, attacked.images), classifier)
    right = before == labels
    written = torch.tensor([SHAPES.index(a["word"]) for a in attacked.attributes])
    predicted_shape = after % len(SHAPES)  # class_names() is colour-major: index = colour * 6 + shape
    return {
        "accuracy_clean": _mean(right),
        "accuracy_attacked": _mean(after == labels),
        "flip_rate": _mean((after != before)[right]),
        "follows_word_rate": _mean(predicted_shape == written),
        "follows_word_given_flip": _mean((predicted_shape == written)[right & (after != before)]),
        "chance_follows_word": 1 / len(SHAPES),
        "n": len(labels),
        "chance": 1 / len(class_names()),
    }


# ----------------------------------------------------------------------------------------------------------------
# Limitation 4: CLIP chooses among captions; it cannot generate one


def scene_of(attributes: dict) -> shapes.Scene:
    """The Scene back from PairedData.attributes[i] (scene.to_dict())."""
    objects = [shapes.Obj(**o) for o in attributes["objects"]]
    return shapes.Scene(objects=objects, relation=attributes["relation"], word=attributes["word"],
                        background=attributes["background"], rendition=attributes["rendition"])


def best_captions(model, tokenizer, images, pool: list[str]) -> list[str]:
    """For each image (uint8 [N, S, S, 3]) the caption of `pool` it matches best: CLIP's way to "describe"."""
    sims = encode_images(model, images).cpu() @ encode_texts(model, tokenizer, pool).cpu().t()  # [N, P]
    return [pool[j] for j in sims.argmax(dim=1).tolist()]


def single_object_grammar() -> list[str]:
    """Every caption the grammar has for one object without a word: 36 x ("a red circle", "a small red circle",
    "a large red circle", "one red circle") = 144."""
    return [p for c in COLOURS for s in SHAPES
            for p in (noun_phrase(c, s), *(noun_phrase(c, s, z) for z in shapes.SIZES), f"one {c} {s}")]


def choose_not_generate(model, tokenizer, smoke: bool = False, seed: int = 0, holdout=HOLDOUT) -> dict:
    """CLIP can only pick a caption from a list someone wrote; these probes make it "describe" by search.

      caption_top1     held-out scenes of every kind; the pool is every distinct caption generated for them;
                       right when the best caption is true of the image (chance: the mean share of true
                       captions in the pool, chance_caption_top1)
      unseen_top1      objects of the `holdout` (colour, shape) combinations, never seen in training if the model
                       was trained with shapes_options={"holdout": HOLDOUT}: is "a {colour} {shape}" the best of
                       the 36? seen_top1 is the same for the other 34 classes. Chance 1/36.
      unseen_top1_grammar   the same search over all 144 single-object captions of the grammar (sizes, "one");
                       right when the best caption names the right colour and shape (chance 1/36)
    """
    size = model.config.image_size
    data = shapes.generate(_size(smoke, "pool_images"), seed=_stream(seed, 5), image_size=size)
    pool = sorted(set(data.captions))
    best = best_captions(model, tokenizer, data.images, pool)
    pool_cores = {}
    for c in pool:  # how many pool entries share each core ("a red circle", "a photo of a red circle")
        pool_cores[caption_core(c)] = pool_cores.get(caption_core(c), 0) + 1
    hits, chances = [], []
    for caption, attributes in zip(best, data.attributes):
        cores = set(shapes.caption_cores(scene_of(attributes)))
        hits.append(caption_core(caption) in cores)
        chances.append(sum(pool_cores.get(c, 0) for c in cores) / len(pool))

    # unseen compositions: describe objects of held-out combinations with the 36 class captions
    names = class_names()
    class_captions = [noun_phrase(*name.split(" ")) for name in names]
    n = _size(smoke, "holdout_images")
    unseen_hits, grammar_hits = [], []
    grammar = single_object_grammar()
    for k, (colour, shape) in enumerate(holdout):
        scenes, images = _scenes("single", n, seed, 60 + k, size, colours=colour, shapes=shape)
        described = best_captions(model, tokenizer, images, class_captions)
        unseen_hits += [c == noun_phrase(colour, shape) for c in described]
        grammar_hits += [c.endswith(f"{colour} {shape}") for c in best_captions(model, tokenizer, images, grammar)]
    seen, seen_labels = shapes.single_object_set(max(1, n // 2), seed=_stream(seed, 6), image_size=size)
    held = {tuple(p) for p in holdout}
    keep = [i for i, y in enumerate(seen_labels) if tuple(names[y].split(" ")) not in held]
    seen_best = best_captions(model, tokenizer, seen.images[keep], class_captions)
    return {
        "caption_top1": _mean(hits),
        "chance_caption_top1": _mean(chances),
        "pool_size": len(pool),
        "unseen_top1": _mean(unseen_hits),
        "unseen_top1_grammar": _mean(grammar_hits),
        "seen_top1": _mean([c == class_captions[seen_labels[i]] for c, i in zip(seen_best, keep)]),
        "n_unseen": len(unseen_hits),
        "chance": 1 / len(names),
    }


# ----------------------------------------------------------------------------------------------------------------
# Limitation 5: deep learning's poor data efficiency (CLIP saw 12.8 billion images in training)


def history_curve(history: list[dict], batch_size: int, key: str = "val_zeroshot_top1") -> dict:
    """A run's periodic evaluations as a learning curve: {"pairs_seen": [...], "accuracy": [...]}.

    history: TrainResult.history (rows with "step" and, at evaluations, key); pairs seen = step x batch_size.
    RECIPES["base"] evaluates every 500 steps, so its history is a learning curve at little extra cost.
    """
    rows = [r for r in history if key in r]
    return {"pairs_seen": [int(r["step"]) * batch_size for r in rows], "accuracy": [float(r[key]) for r in rows]}


def data_efficiency(results: dict, thresholds=(0.5, 0.8, 0.9)) -> dict:
    """Accuracy against the amount of training data, from runs the caller trained (DATA_EFFICIENCY says how).

    results: {number of training pairs (or images): accuracy 0..1, or a TrainResult.history whose last
    "val_zeroshot_top1" is used}. Returns {"pairs": sorted sizes, "accuracy": [...], "pairs_to_reach":
    {"0.9": the least size that reached it, or None}}. The paper: CLIP needs hundreds of millions of pairs for
    what a child learns from a handful of examples; compare the few-shot curve's labelled examples (9_few_shot).
    """
    def value(v):
        if isinstance(v, (list, tuple)):
            return [float(r["val_zeroshot_top1"]) for r in v if "val_zeroshot_top1" in r][-1]
        return float(v)

    pairs = [int(p) for p in sorted(results)]
    accuracy = [value(results[p]) for p in pairs]
    return {"pairs": pairs, "accuracy": accuracy, "pairs_to_reach": _first_reaching(pairs, accuracy, thresholds)}


def _first_reaching(amounts: list[int], accuracy: list[float], thresholds) -> dict:
    """{str(threshold): the first of the (ascending) amounts whose accuracy reached it, or None}."""
    return {str(t): next((n for n, a in zip(amounts, accuracy) if a >= t), None) for t in thresholds}


# ----------------------------------------------------------------------------------------------------------------
# Limitation 6: validation sets queried many times (prompt and template choice overfits to them)

CANDIDATE_TEMPLATES = [
    "a photo of a {}.", "a {}.", "a drawing of a {}.", "a picture of a {}.", "an image of a {}.",
    "a photo of one {}.", "{}", "one {}", "the {}", "a small {}", "a large {}", "a photo of a small {}",
    "a photo of a large {}", "a photo of the {}.", "a good photo of a {}.", "a bad photo of a {}.",
    "a sketch of a {}.", "this is a {}", "there is a {}", "a {} on a grey background",
]


def validation_reuse(model, tokenizer, smoke: bool = False, seed: int = 0, rendition: str = "normal") -> dict:
    """Choose the best prompt template set on a small validation split, then look at it on a large test split.

    The paper admits that developing CLIP meant querying full validation sets many times, so its zero-shot
    numbers are not truly zero-shot. Here: every single template of CANDIDATE_TEMPLATES and `subsets` random
    3-template ensembles are scored on `val_per_class` images per class; the winner's val accuracy is
    optimistic. Returns val_accuracy_best, test_accuracy_best, optimistic_gap (= val - test of the winner),
    test_accuracy_mean over all candidates, test_accuracy_oracle (the best on test), n_candidates.
    """
    size = model.config.image_size
    names = class_names()
    templates = CANDIDATE_TEMPLATES if not smoke else CANDIDATE_TEMPLATES[:4]
    rng = np.random.default_rng([seed, 70])
    candidates = [(t,) for t in range(len(templates))]
    candidates += [tuple(sorted(rng.choice(len(templates), 3, replace=False).tolist()))
                   for _ in range(_size(smoke, "subsets"))]
    text = encode_texts(model, tokenizer, [t.format(name) for name in names for t in templates]).cpu()
    text = text.view(len(names), len(templates), -1)  # [K, T, D]
    splits = {}
    for split, (n, k) in {"val": (_size(smoke, "val_per_class"), 7), "test": (_size(smoke, "per_class"), 8)}.items():
        data, labels = shapes.single_object_set(n, seed=_stream(seed, k), image_size=size, rendition=rendition)
        splits[split] = (encode_images(model, data.images).cpu(), torch.as_tensor(labels))
    accuracy = {"val": [], "test": []}
    for cand in candidates:
        classifier = F.normalize(text[:, list(cand)].mean(dim=1), dim=-1).t()  # [D, K]
        for split, (features, labels) in splits.items():
            accuracy[split].append(_mean(_classify(features, classifier) == labels))
    best = int(np.argmax(accuracy["val"]))  # the first of equals
    return {
        "val_accuracy_best": accuracy["val"][best],
        "test_accuracy_best": accuracy["test"][best],
        "optimistic_gap": accuracy["val"][best] - accuracy["test"][best],
        "val_accuracy_mean": _mean(accuracy["val"]),
        "test_accuracy_mean": _mean(accuracy["test"]),
        "test_accuracy_oracle": max(accuracy["test"]),
        "n_candidates": len(candidates),
        "n_val": len(splits["val"][1]),
        "n_test": len(splits["test"][1]),
        "chance": 1 / len(names),
    }


# ----------------------------------------------------------------------------------------------------------------
# Limitation 7: the choice of evaluation datasets


def eval_set_scores(results: dict) -> dict:
    """One accuracy per probe set from run_probes' results: {"accuracy": {set: acc}, "chance": {set: chance}}.

    The paper: its 27-dataset suite was chosen along with CLIP's development, so it is not a neutral benchmark.
    A different set of evaluation sets can rank models differently: see rank_models.
    """
    shift = results["3_distribution_shift"]
    sets = {f"shapes_{r}": (shift["zero_shot"][r], shift["chance"]) for r in RENDITIONS}
    sets.update({
        "counting": (results["2_counting"]["accuracy"], results["2_counting"]["chance"]),
        "spatial": (results["2_spatial"]["accuracy"], results["2_spatial"]["chance"]),
        "binding": (results["2_binding"]["accuracy"], results["2_binding"]["chance"]),
        "size": (results["2_fine_grained"]["size"], results["2_fine_grained"]["chance_size"]),
        "typographic": (results["typographic"]["accuracy_attacked"], results["typographic"]["chance"]),
        "captions": (results["4_choose_not_generate"]["caption_top1"],
                     results["4_choose_not_generate"]["chance_caption_top1"]),
    })
    return {"accuracy": {k: v[0] for k, v in sets.items()}, "chance": {k: v[1] for k, v in sets.items()}}


def rank_models(results_by_model: dict) -> dict:
    """How the ranking of several models depends on the evaluation set.

    results_by_model: {model name: run_probes output, or {set: accuracy}}. Returns
      ranking      {set: [model names, best first]}
      winner       {set: the best model}
      mean_rank    {model: its mean rank over sets (1 = best)}
      n_winners    how many different models win at least one set
      agreement    the share of pairs of sets that order every pair of models the same way (1 = the choice
                   of sets does not matter)
    """
    scores = {}
    for name, r in results_by_model.items():
        scores[name] = eval_set_scores(r)["accuracy"] if "3_distribution_shift" in r else dict(r)
    models = list(scores)
    sets = [s for s in scores[models[0]] if all(s in scores[m] for m in models)]
    ranking = {s: sorted(models, key=lambda m: (-scores[m][s], models.index(m))) for s in sets}
    mean_rank = {m: _mean([ranking[s].index(m) + 1 for s in sets]) for m in models}
    model_pairs = list(itertools.combinations(models, 2))

    def order(s):
        return [np.sign(scores[a][s] - scores[b][s]) for a, b in model_pairs]

    set_pairs = list(itertools.combinations(sets, 2))
    agreement = _mean([order(s) == order(t) for s, t in set_pairs]) if set_pairs else 1.0
    return {"ranking": ranking, "winner": {s: ranking[s][0] for s in sets}, "mean_rank": mean_rank,
            "n_winners": len({ranking[s][0] for s in sets}), "agreement": agreement}


# ----------------------------------------------------------------------------------------------------------------
# Limitation 8: social biases (planted here as a spurious colour-shape correlation)


def bias(model, tokenizer, smoke: bool = False, seed: int = 0, correlation: dict = BIAS) -> dict:
    """Per-group label rates under a planted correlation, and how the design of the classes changes them.

    The paper (section 7) finds that CLIP's label rates differ by group (race, gender, age) and that the
    class design matters: adding a "child" class changed how often young people got crime-related labels.
    Here: a model trained with shapes_options={"correlation": BIAS} saw mostly red circles. On objects that
    are NOT circles, per colour of the object and for three class designs:
      shapes        the 6 shape names ("a photo of a star.")
      colour_shape  the 36 "colour shape" classes (a class counts as "circle" when its shape is)
      added_class   the 6 shapes plus one extra class, "red circle" (counts as "circle")
    rate_<design>[colour]   how often the classifier's answer is "circle" (argmax)
    prob_<design>[colour]   the mean probability it gives to "circle" (softmax of the zero-shot logits): it shows
                            a learned association even where it is too weak to change the answer
    gap_<design>, prob_gap_<design>   red's value minus the mean over the other colours (0: no bias)
    Chance: 1/6 (a random shape).
    """
    colour, target = correlation["colour"], correlation["shape"]
    data, labels = shapes.single_object_set(_size(smoke, "per_class"), seed=_stream(seed, 9),
                                            image_size=model.config.image_size)
    names = class_names()
    true_colour = np.array([names[y].split(" ")[0] for y in labels])
    true_shape = np.array([names[y].split(" ")[1] for y in labels])
    keep = true_shape != target
    group = true_colour[keep]  # [n], the colour of each kept object
    features = encode_images(model, data.images[keep]).cpu()  # [n, D]
    designs = {
        "shapes": (list(SHAPES), list(SHAPES)),  # (class names, the shape each class stands for)
        "colour_shape": (names, [n.split(" ")[1] for n in names]),
        "added_class": (list(SHAPES) + [f"{colour} {target}"], list(SHAPES) + [target]),
    }
    out = {}
    for design, (classes, class_shape) in designs.items():
        classifier = zeroshot_classifier(model, tokenizer, classes, SHAPES_TEMPLATES).cpu()  # [D, K]
        probs = (model.inverse_temperature().item() * features @ classifier).softmax(dim=1)  # [n, K]
        is_target = torch.tensor([s == target for s in class_shape])  # [K]
        says = np.array([class_shape[p] == target for p in probs.argmax(dim=1).tolist()])  # [n]
        prob = probs[:, is_target].sum(dim=1).numpy()  # [n]
        for key, values in ((f"rate_{design}", says), (f"prob_{design}", prob)):
            per_group = {c: _mean(values[group == c]) for c in COLOURS}
            out[key] = per_group
            gap_key = f"gap_{design}" if key.startswith("rate") else f"prob_gap_{design}"
            out[gap_key] = per_group[colour] - _mean([per_group[c] for c in COLOURS if c != colour])
    return out | {"n": int(keep.sum()), "chance": 1 / len(SHAPES)}


# On COCO: gendered captions. The group of an image comes from what its captions say ("a woman cutting a cake"),
# as in Hendricks et al. 2018 ("Women also snowboard"); images whose captions disagree or say nothing are left out.
GENDER_WORDS = {
    "woman": ("woman", "women", "girl", "girls", "lady", "ladies", "she", "her", "mother", "female"),
    "man": ("man", "men", "boy", "boys", "guy", "guys", "he", "his", "father", "male", "gentleman"),
}
# Contexts named by caption words: scenes COCO's captions associate unevenly with the two groups.
GENDER_CONTEXTS = {
    "kitchen": ("kitchen", "cooking", "cook", "oven", "stove"),
    "skateboard": ("skateboard", "skateboarder", "skateboarding", "skate"),
    "surfing": ("surfboard", "surfer", "surfing", "surf", "wave", "waves"),
    "tennis": ("tennis", "racket", "racquet"),
    "baseball": ("baseball", "bat", "batter", "pitcher"),
    "computer": ("laptop", "computer", "keyboard"),
    "phone": ("phone", "cellphone", "cell"),
    "umbrella": ("umbrella", "umbrellas"),
    "horse": ("horse", "horses"),
    "motorcycle": ("motorcycle", "motorbike", "bike"),
    "cake": ("cake", "cakes"),
    "shopping": ("shopping", "store", "market"),
}


def _words(caption: str) -> set[str]:
    return set("".join(ch if ch.isalnum() else " " for ch in caption.lower()).split())


def caption_gender(captions: list[str]) -> str | None:
    """"woman", "man", or None: what the captions of one image say, when they say one thing (GENDER_WORDS)."""
    said = {g for c in captions for g, words in GENDER_WORDS.items() if _words(c) & set(words)}
    return said.pop() if len(said) == 1 else None


def gender_associations(model, tokenizer, data, contexts: dict = GENDER_CONTEXTS, min_images: int = 5) -> dict:
    """What the captions say about gender against what the model predicts, per context (COCO; limitation 8).

    data: PairedData of held-out images with their captions (e.g. COCO val). Each image gets a group from its
    captions (caption_gender) and contexts from their words (GENDER_CONTEXTS); the model classifies the group
    zero-shot ("a photo of a man." vs "a photo of a woman."). Per context with >= min_images labelled images:
      n, data_woman_share     how many images, and the share whose captions say "woman"
      model_woman_share       the share the model calls "woman"
      amplification           model_woman_share - data_woman_share: > 0, the model says "woman" in this context
                              even more often than the captions do (bias amplification; Zhao et al. 2017)
      accuracy                agreement with the captions
    Overall: n, accuracy (chance 0.5), data_woman_share, model_woman_share.
    """
    groups = [caption_gender(data.captions_of(i)) for i in range(data.num_images)]
    labelled = np.array([i for i, g in enumerate(groups) if g is not None], dtype=np.int64)
    if labelled.size == 0:
        return {"note": "no image's captions name a gender (GENDER_WORDS)", "n": 0, "chance": 0.5}
    is_woman = np.array([groups[i] == "woman" for i in labelled])  # [n]
    classifier = zeroshot_classifier(model, tokenizer, ["man", "woman"], ["a photo of a {}."]).cpu()  # [D, 2]
    says_woman = (encode_images(model, data.images[labelled]).cpu() @ classifier).argmax(dim=1).numpy() == 1
    words = [_words(" ".join(data.captions_of(i))) for i in labelled]
    per_context = {}
    for name, cue in contexts.items():
        inside = np.array([bool(w & set(cue)) for w in words])
        if inside.sum() < min_images:
            continue
        data_share, model_share = _mean(is_woman[inside]), _mean(says_woman[inside])
        per_context[name] = {"n": int(inside.sum()), "data_woman_share": data_share, "model_woman_share": model_share,
                             "amplification": model_share - data_share,
                             "accuracy": _mean(says_woman[inside] == is_woman[inside])}
    return {"n": int(labelled.size), "accuracy": _mean(says_woman == is_woman), "data_woman_share": _mean(is_woman),
            "model_woman_share": _mean(says_woman), "contexts": per_context, "chance": 0.5}


# ----------------------------------------------------------------------------------------------------------------
# Limitation 9: few-shot can be worse than zero-shot


def few_shot(model, tokenizer, smoke: bool = False, seed: int = 0) -> dict:
    """Linear probes on frozen features with k labelled images per class against the zero-shot classifier.

    The paper: zero-shot CLIP matches a 4-shot linear probe on the same features, and 1- and 2-shot probes are
    worse than zero-shot - unlike humans, who gain a lot from one example. It suggests using the zero-shot
    classifier as a prior; zero_shot_init is such a probe (started at, and pulled towards, the zero-shot weights).
    Returns {"zero_shot": acc, "linear_probe": {k: mean acc}, "linear_probe_std": {k: std over seeds},
    "zero_shot_init": {k: mean acc}, "k_matching_zero_shot": the least k whose probe reaches zero-shot (or None)}.
    """
    size = model.config.image_size
    train, train_labels = shapes.single_object_set(_size(smoke, "few_shot_per_class"), seed=_stream(seed, 10),
                                                   image_size=size)
    test, test_labels = shapes.single_object_set(_size(smoke, "per_class"), seed=_stream(seed, 11), image_size=size)
    train_features, test_features = encode_images(model, train.images).cpu(), encode_images(model, test.images).cpu()
    classifier = zeroshot_classifier(model, tokenizer, class_names(), SHAPES_TEMPLATES).cpu()
    zero_shot = _mean(_classify(test_features, classifier) == torch.as_tensor(test_labels))
    ks = [k for k in _size(smoke, "ks") if k <= _size(smoke, "few_shot_per_class")]
    seeds = [seed * 100 + s for s in _size(smoke, "seeds")]
    plain = few_shot_curve(train_features, train_labels, test_features, test_labels, ks=ks, seeds=seeds)
    # init.t() must be contiguous: fit_logistic_regression clones it into the weights that L-BFGS flattens
    init = classifier.t().contiguous().t()  # [D, K], stored column by column
    prior = few_shot_curve(train_features, train_labels, test_features, test_labels, ks=ks, seeds=seeds,
                           init=init, init_inverse_temperature=model.inverse_temperature().item())
    matching = next((k for k in ks if plain[k][0] >= zero_shot), None)
    return {
        "zero_shot": zero_shot,
        "linear_probe": {str(k): plain[k][0] for k in ks},
        "linear_probe_std": {str(k): plain[k][1] for k in ks},
        "zero_shot_init": {str(k): prior[k][0] for k in ks},
        "k_matching_zero_shot": matching,
        "n_seeds": len(seeds),
        "chance": 1 / len(class_names()),
    }


# ----------------------------------------------------------------------------------------------------------------
# Everything at once


def _learning_curve(history, batch_size, thresholds=(0.5, 0.8, 0.9)) -> dict:
    """Limitation 5 for one run: its periodic zero-shot evaluations as a curve (see history_curve)."""
    chance = 1 / len(class_names())
    curve = history_curve(history, batch_size) if history and batch_size else {"pairs_seen": []}
    if not curve["pairs_seen"]:
        return {"note": "needs a run with periodic zero-shot evaluations (eval_every), or runs on different amounts "
                        "of data: train DATA_EFFICIENCY's runs and pass their accuracies to data_efficiency()",
                "chance": chance}
    reach = _first_reaching(curve["pairs_seen"], curve["accuracy"], thresholds)
    return {**curve, "pairs_to_reach": reach, "chance": chance}


def run_probes(model, tokenizer, smoke: bool = False, seed: int = 0, history: list[dict] | None = None,
               batch_size: int | None = None) -> dict:
    """Every single-model probe, one key per limitation; a JSON-serialisable dict of dicts of numbers.

    history, batch_size: the run's metrics (TrainResult.history, or metrics.jsonl) and pairs per step. Limitation 5
    (data efficiency) is then the run's own learning curve: zero-shot top-1 against pairs seen, and the pairs it
    took to reach 50/80/90%; without a history with periodic evaluations it is a note pointing to
    data_efficiency. Limitation 8 (bias) measures the rates of the planted BIAS correlation (meaningful for a model
    trained with RECIPES["bias"]; an unbiased model should show gaps near 0).
    """
    model.eval()
    cnn = _supervised_cnn(model, smoke, seed)  # one supervised baseline for limitations 1 and 3
    results = {
        "1_below_sota": supervised_vs_zeroshot(model, tokenizer, smoke, seed, cnn=cnn),
        "2_counting": counting(model, tokenizer, smoke, seed),
        "2_spatial": spatial(model, tokenizer, smoke, seed),
        "2_word_order": word_order(model, tokenizer, _held_out_pairs(model, smoke, seed),
                                   max_images=_size(smoke, "word_order_images"), seed=seed),
        "2_binding": binding(model, tokenizer, smoke, seed),
        "2_fine_grained": fine_grained(model, tokenizer, smoke, seed),
        "3_distribution_shift": distribution_shift(model, tokenizer, smoke, seed, cnn=cnn),
        "typographic": typographic(model, tokenizer, smoke, seed),
        "4_choose_not_generate": choose_not_generate(model, tokenizer, smoke, seed),
        "5_data_efficiency": _learning_curve(history, batch_size),
        "6_validation_reuse": validation_reuse(model, tokenizer, smoke, seed),
        "8_bias": bias(model, tokenizer, smoke, seed),
        "9_few_shot": few_shot(model, tokenizer, smoke, seed),
    }
    results["7_eval_set_choice"] = eval_set_scores(results)
    order = ["1_below_sota", "2_counting", "2_spatial", "2_word_order", "2_binding", "2_fine_grained",
             "3_distribution_shift", "4_choose_not_generate", "5_data_efficiency", "6_validation_reuse", "7_eval_set_choice", "8_bias",
             "9_few_shot", "typographic"]
    return {key: results[key] for key in order}
