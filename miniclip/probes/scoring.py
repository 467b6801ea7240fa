"""What every probe is made of: seeded probe sets that never meet the training data, and the scoring of a choice.

    scenes, images = draw_scenes("relation", 8, seed=0, stream=30, image_size=32)   # 8 scenes, uint8 [8, 32, 32, 3]
    scores = caption_scores(model, tokenizer, images, options)    # cosines [N, M]: image i against options[i]
    credit = choice_credit(scores, answer)                         # [N]: 1 right, 0 wrong, 1/t for a t-way tie

A probe that picks among captions takes a scorer, `score(images, options) -> [N, M]`; the model's own is
model_scorer(model, tokenizer). Any other function of that shape plugs in: a bag-of-words scorer, an oracle that
reads the scene, a student's model.
"""
from __future__ import annotations

from functools import partial
from typing import Callable

import numpy as np
import torch

from miniclip.data.shapes import make_scene, render
from miniclip.encode import encode_images, encode_texts

Scorer = Callable[[np.ndarray, list[list[str]]], torch.Tensor]  # score(images [N, S, S, 3], options) -> [N, M]


def probe_data_seed(seed: int, k: int) -> int:
    """The data seed of probe set k: far from the seeds of training (0) and validation/test (~1e6, 2e6)."""
    return 7_000_000 + 1000 * seed + k


def draw_scenes(kind: str, n: int, seed: int, stream: int, image_size: int, **fixed):
    """n scenes of one kind and their images uint8 [n, S, S, 3]; scene i comes from the rng [seed, stream, i].

    stream: a number of the probe's own (counting 20, spatial 30, ...), so probe sets never share images.
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


def model_scorer(model, tokenizer) -> Scorer:
    """The model as a scorer: score(images, options) -> cosines [N, M] (caption_scores)."""
    return partial(caption_scores, model, tokenizer)


def choice_credit(scores, answer) -> np.ndarray:
    """scores [N, M], answer int [N] -> credit float [N]: 1 if the answer scores highest, 1/t if t options tie."""
    scores, answer = torch.as_tensor(scores), torch.as_tensor(answer, dtype=torch.long)
    tied = scores == scores.max(dim=1, keepdim=True).values  # [N, M]
    credit = tied[torch.arange(len(scores)), answer].float() / tied.sum(dim=1).float()
    return credit.numpy().astype(np.float64)


def average(x) -> float:
    """The mean of a list, array or tensor of numbers or booleans as a float (0.0 when empty)."""
    x = np.asarray(x, dtype=np.float64)
    return float(x.mean()) if x.size else 0.0


def classify(features: torch.Tensor, classifier: torch.Tensor) -> torch.Tensor:
    """features [N, D] @ classifier [D, K] -> predicted class indices [N]."""
    return (features.cpu() @ classifier.cpu()).argmax(dim=1)
