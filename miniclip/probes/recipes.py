"""The probe models: training recipes (overrides of miniclip.config.TrainConfig) for the lessons' failure modes.

    cfg = probe_config("hard_negatives")          # a TrainConfig for miniclip.train.train / load_or_train
    cfg = probe_config("base", smoke=True)        # 40 steps on 3000 images: seconds, for tests
"""
from __future__ import annotations

from miniclip.config import TrainConfig

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


def probe_config(name: str, smoke: bool = False, **overrides) -> TrainConfig:
    """RECIPES[name] as a TrainConfig of the shapes-tiny preset (smoke: SMOKE_RECIPE, 40 steps on 3000 images).

    overrides: any TrainConfig field, applied last (e.g. steps=600, num_images=3000 for DATA_EFFICIENCY).
    """
    if name not in RECIPES:
        raise ValueError(f"unknown probe recipe {name!r}; known: {', '.join(RECIPES)}")
    return TrainConfig.for_preset("shapes-tiny", **{**RECIPES[name], **(SMOKE_RECIPE if smoke else {}), **overrides})
