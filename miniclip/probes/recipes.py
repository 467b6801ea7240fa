"""The probe models: training recipes (overrides of miniclip.config.TrainConfig) for the lessons' failure modes.

    run = train_probe_model("bias", runs)    # loads runs/bias, or trains it (a fine-tune's base first)
    cfg = probe_config("bias", runs=runs)    # the TrainConfig itself
    cfg = probe_config("base", smoke=True)   # 3 steps of 16 pairs: seconds, for tests

One shared `base` run and three variants of it. A variant with init_from="base" is a fine-tune: it starts from the
base's weights and tokenizer (TrainConfig.init_from) with a fresh short warmup and cosine schedule, as NegCLIP
fine-tunes a trained CLIP; it is trained again when the base holds other weights (train.load_or_train compares).
`hard_negatives` is such a fine-tune; `words` and `bias` train from scratch, because fine-tunes of the base did not
keep their effects (the comments below give what was measured).
"""
from __future__ import annotations

from pathlib import Path

from miniclip.config import TrainConfig
from miniclip.train import TrainResult, load_or_train

# Two (colour, shape) combinations that the probe models never see in training: "describe an unseen composition".
HOLDOUT = (("blue", "heart"), ("yellow", "cross"))
# The planted spurious correlation of the "bias" model: 90% of red training objects are circles.
BIAS = {"colour": "red", "shape": "circle", "strength": 0.9}
# Relation-heavy data (shares of single / two-object / count scenes; two-object scenes are half relations): 35% of
# the images are relations instead of shapes-tiny's 17.5%. The hard-negative fine-tune learns from it.
RELATION_MIX = (0.2, 0.7, 0.1)

# What each variant measures decides whether it can be a fine-tune of the base (measured on 2 CPU cores, a
# 1000-step shapes-tiny run as the base; full probe sets unless said otherwise):
# - bias: a fine-tune plants the correlation only from a strong base: 200 steps from the 1000-step main run gave a
#   "6 shapes + 'red circle'" gap of +37 points (+19 for the main run itself), but from the HOLDOUT base (also 1000
#   steps) +18, no wider than the main run's; measured again (2026-11-30), 200 / 300 steps from the main run gave
#   +29 / +28 against its +19. From scratch (1000 steps, as below) the gap is +50 to +62; 600 steps from
#   scratch give +54, but the model is weak (67% zero-shot) and red non-circles are called "circle" 11 points less
#   often among the six shapes, where an unbiased model shows no gap; 800 steps: +40, and 15 points less often.
# - words: a fine-tune does not learn to read. The base already tells shapes apart, so a written word that always
#   names the shape adds nothing: after 200 steps (word_match 1.0) a wrong word flips 0.4% of right answers, after
#   300 steps with word_match 0.5 (reading needed for the caption's "with the word X") 6%. From scratch, reading
#   is the easier cue and is learned first: 1000 steps -> 74% flips, the written shape followed 36% of the time
#   (zero-shot on clean images 77%); 800 steps -> 76% flips, 39% followed, clean 63%; 500 steps -> 72% flips,
#   49% followed, but clean zero-shot only 30%. Fewer steps would save little and weaken the model on clean images.
# - hard_negatives: relations are slow, because the grammar says "A left of B" also as "B right of A": no bag of
#   words separates a caption from its swapped twin, order has to be learned together with the relation word, and
#   only after the model tells the objects apart. Spatial probe (true vs swapped caption, chance 50%):
#     from scratch, shapes-tiny's data: near chance for ~1000 steps, 58% after 1500, 99.5% after 3000 (52% without
#       hard negatives);
#     from scratch, RELATION_MIX: 77% after a 1500-step run (71% at lr 6e-3), 99% / 98% after 2000 (seeds 0 / 1);
#     fine-tune of the base, 27.5% relations, a 400-step schedule: 47-58% after 50-250 steps;
#     fine-tune of the base, RELATION_MIX, 20 warmup steps, 50,000 images: 87% after a 750-step run, 98% after
#       a 1000-step run; on 20,000 images (the recipe below) 71% / 97% / 98% after 500 / 750 / 1000 steps, the
#       36-class zero-shot task at 99%; the same fine-tune without hard negatives: 53% (the data alone does not do it).
#   The fine-tune costs 1000 steps where the base exists (notebook 07 trains it), against 3000 from scratch. 750
#   steps would save notebook 08 about 20 s, but its spatial probe then gave 88% (2026-11-30), under lesson 8's 90%.
FINE_TUNE = dict(init_from="base", warmup_steps=20, eval_every=0, num_images=20_000)
RECIPES = {
    # shapes-tiny's own recipe (the main run's: 1000 steps of 256 pairs) without the HOLDOUT combinations; its
    # evaluations every 250 steps are a learning curve (limitation 5)
    "base": dict(eval_every=250, shapes_options={"holdout": HOLDOUT}),
    # + each relation caption's argument-swapped twin as an extra negative (NegCLIP): the base fine-tuned on
    #   relation-heavy data (see above)
    "hard_negatives": dict(FINE_TUNE, steps=1000, hard_negatives=True,
                           shapes_options={"holdout": HOLDOUT, "mix": RELATION_MIX}),
    # + 65% of the single-object images carry their shape's name, written on them: the model learns to read, and
    #   as the word is always right, reading is a shortcut it comes to trust (the typographic attack); from scratch
    "words": dict(eval_every=0, word_fraction=0.65, shapes_options={"holdout": HOLDOUT, "word_match": 1.0}),
    # + a planted correlation (limitation 8): red objects are mostly circles; from scratch (see above)
    "bias": dict(eval_every=0, shapes_options={"holdout": HOLDOUT, "correlation": BIAS}),
}
SMOKE_RECIPE = dict(steps=3, batch_size=16, num_images=200, eval_every=0)  # probe_config(..., smoke=True): seconds

# Limitation 5 (data efficiency): runs from scratch on different numbers of distinct images, the same steps each.
# Measured at 600 steps of 256 pairs: 300 images -> 21% zero-shot top-1, 1000 -> 28%, 3000 -> 61%, 50000 -> 77%.
# Shorter runs squeeze the curve: 600 steps of 64 pairs give 22% (300 images) and 29% (50000), 500 steps of 128
# pairs 24% and 34%: too close to tell. Three sets are enough for the curve (the 1000-image run, dropped 2026-11-30,
# took 80 s of one worker, notebook 08 433 s in all against 414 s without it).
DATA_EFFICIENCY = {"recipe": "base", "num_images": (300, 3000, 50000), "train": dict(steps=600, eval_every=0)}


def probe_config(name: str, smoke: bool = False, runs=None, **overrides) -> TrainConfig:
    """RECIPES[name] as a TrainConfig of the shapes-tiny preset (smoke: SMOKE_RECIPE, 3 steps of 16 pairs).

    runs: the folder that holds the probe runs; a fine-tune (a recipe with init_from) starts from runs/<its base>.
    overrides: any TrainConfig field (e.g. num_images=3000 for DATA_EFFICIENCY); smoke's sizes win over them.
    """
    if name not in RECIPES:
        raise ValueError(f"unknown probe recipe {name!r}; known: {', '.join(RECIPES)}")
    recipe = {**RECIPES[name], **overrides, **(SMOKE_RECIPE if smoke else {})}
    if recipe.get("init_from") in RECIPES:
        if runs is None:
            raise ValueError(f"probe recipe {name!r} fine-tunes the {recipe['init_from']!r} run: pass runs=, the "
                             "folder that holds it")
        recipe["init_from"] = str(Path(runs) / recipe["init_from"])
    return TrainConfig.for_preset("shapes-tiny", **recipe)


def steps_in_all(name: str, smoke: bool = False) -> int:
    """The training steps behind RECIPES[name]'s model: its own, plus its base's for a fine-tune."""
    own = probe_config(name, smoke, runs=".").steps  # runs: any folder will do, only the steps are read
    base = RECIPES[name].get("init_from")
    return own + (steps_in_all(base, smoke) if base else 0)


def train_probe_model(name: str, runs, smoke: bool = False, folder: str | None = None, progress: bool = True,
                      eval_fn=None, **overrides) -> TrainResult:
    """The run of RECIPES[name] in runs/folder (default: runs/name): loaded if finished, else trained.

    A fine-tune first loads or trains its base in runs/<base> (and is trained again when the base holds
    another model than it started from: load_or_train sees that). eval_fn, overrides: as train's; the evaluation's
    sizes among them (eval_images, eval_per_class) apply to the base too.
    """
    runs = Path(runs)
    cfg, out = probe_config(name, smoke, runs=runs, **overrides), runs / (folder or name)
    base = RECIPES[name].get("init_from")
    if base is not None:
        evaluation = {k: v for k, v in overrides.items() if k in ("eval_images", "eval_per_class")}
        train_probe_model(base, runs, smoke=smoke, progress=progress, eval_fn=eval_fn, **evaluation)
    return load_or_train(cfg, out, progress=progress, eval_fn=eval_fn)
