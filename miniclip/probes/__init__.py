"""Probes: the limitations the CLIP paper lists (section 6), turned into numbers on the shapes world.

Every probe measures a model trained on the captioned shapes world, where every image is built from an explicit
scene: we can draw exactly the image a probe needs, change one thing (swap two objects, mirror the picture, write
a word on it) and know the right answer. Every probe returns a plain dict of numbers with the accuracy expected
by guessing under "chance", so a result always reads against a baseline.

    limitation (the paper)                          probe                               module
    1  zero-shot below the supervised state of art  supervised_vs_zeroshot, where_task  robustness, position (cnn)
    2  systematic and fine-grained tasks            counting, spatial, word_order       systematic
                                                    (shapes_word_order), binding,
                                                    fine_grained
    3  truly out-of-distribution data               distribution_shift, typographic,    robustness
                                                    effective_robustness
    4  chooses a caption, cannot generate one       choose_not_generate                 captioning
    5  poor data efficiency                         learning_curve, data_efficiency     efficiency
    6  validation sets queried many times           validation_reuse                    benchmarks
    7  the choice of evaluation sets                eval_set_scores, rank_models        benchmarks
    8  social biases                                bias, gender_associations           social_bias
    9  few-shot below zero-shot                     few_shot                            efficiency

    results = run_probes(model, tokenizer)                 # every single-model probe; ~1 minute on a CPU
    results["2_spatial"]        # {"accuracy": 0.52, "chance": 0.5, ...}: bag-of-words relations
    spatial(model, tokenizer, per_kind=10)                 # one probe, on a smaller set
    run_probes(model, tokenizer, sizes=SMOKE_SIZES)        # tiny sets: seconds, for tests
    run_probes(model, tokenizer, only=("2_counting", "2_binding"))   # some of them

From a shell: `miniclip probe RUN_DIR --json [--smoke]`. The probe models a lesson needs (with and without
hard negatives, with words in the images, with a planted bias) are in RECIPES: one base run and three variants
of it; `train_probe_model(name, runs)` loads or trains one (a fine-tune's base first), `probe_config(name)` is its
TrainConfig.

Conventions: accuracies and rates are fractions (0..1); "n_*" are counts; set sizes are keyword arguments whose
defaults are the full sizes (a standard error of about 2-3 points); every probe is deterministic for a given
`seed` (its images come from seeded generators that never overlap the training or validation data). The probes
that pick among captions (counting, spatial, word_order, binding, fine_grained) score them with
`score(images, options) -> [N, M]`, by default the model's caption_scores: pass another scorer (a bag of words,
an oracle that reads the scene) to see what the probe measures.
"""
from __future__ import annotations

from tqdm.auto import tqdm

from miniclip.probes.benchmarks import CANDIDATE_TEMPLATES, eval_set_scores, rank_models, validation_reuse
from miniclip.probes.captioning import best_captions, choose_not_generate, scene_of, single_object_grammar
from miniclip.probes.cnn import TinyCNN, cnn_predict, labelled_shapes, train_shapes_cnn, train_supervised_cnn
from miniclip.probes.efficiency import data_efficiency, few_shot, first_reaching, history_curve, learning_curve
from miniclip.probes.recipes import (BIAS, DATA_EFFICIENCY, HOLDOUT, RECIPES, RELATION_MIX, SMOKE_RECIPE, probe_config,
                                     steps_in_all, train_probe_model)
from miniclip.probes.position import where_task
from miniclip.probes.robustness import (distribution_shift, effective_robustness, supervised_baselines,
                                        supervised_vs_zeroshot, typographic)
from miniclip.probes.scoring import (average, caption_scores, choice_credit, classify, draw_scenes, model_scorer,
                                     probe_data_seed)
from miniclip.probes.social_bias import (GENDER_CONTEXTS, GENDER_WORDS, bias, caption_gender, caption_words,
                                         gender_associations)
from miniclip.probes.systematic import (WORD_ORDER_PERTURBATIONS, binding, binding_captions, counting, fine_grained,
                                        mirror, relation_caption, relation_scenes, shapes_word_order, spatial,
                                        word_order, word_order_perturbations)

# The sizes of every probe's sets, by probe: keyword arguments for that function. The full sizes are each
# function's defaults; SMOKE_SIZES are the least that still run every line (numbers then mean nothing).
SMOKE_SIZES = {
    "train_shapes_cnn": dict(train_per_class=2, steps=5),
    "supervised_vs_zeroshot": dict(per_class=1, train_per_class=2, cnn_steps=5),
    "counting": dict(per_kind=4),
    "spatial": dict(per_kind=4),
    "shapes_word_order": dict(max_images=20),
    "binding": dict(per_kind=4),
    "fine_grained": dict(per_kind=4),
    "distribution_shift": dict(per_class=1, train_per_class=2, cnn_steps=5),
    "typographic": dict(per_class=1),
    "choose_not_generate": dict(pool_images=24, unseen_images=2),
    "validation_reuse": dict(val_per_class=1, test_per_class=1, ensembles=3, templates=CANDIDATE_TEMPLATES[:4]),
    "bias": dict(per_class=1),
    "few_shot": dict(shots=(1, 2), draws=1, per_class=1),
}
FULL_SIZES = {probe: {} for probe in SMOKE_SIZES}  # every probe at its defaults


def run_probes(model, tokenizer, sizes: dict = FULL_SIZES, seed: int = 0, history: list[dict] | None = None,
               batch_size: int | None = None, only=None, progress: bool = False) -> dict:
    """Every single-model probe, one key per limitation; a JSON-serialisable dict of dicts of numbers.

    sizes: FULL_SIZES, SMOKE_SIZES, or {probe name: its size keywords} for some probes (the rest run at full
    size), e.g. {"spatial": {"per_kind": 400}}.
    history, batch_size: the run's metrics (TrainResult.history, or metrics.jsonl) and pairs per step.
    Limitation 5 (data efficiency) is then the run's own learning curve: zero-shot top-1 against pairs seen, and
    the pairs it took to reach 50/80/90%; without a history with periodic evaluations it is a note pointing to
    data_efficiency. Limitation 8 (bias) measures the rates of the planted BIAS correlation (meaningful for a
    model trained with RECIPES["bias"]; an unbiased model should show gaps near 0).
    only: some of the keys (e.g. ("2_counting", "2_spatial")): run just those probes; default every one.
    progress: a bar over the probes (minutes at FULL_SIZES on a CPU), as `miniclip probe` shows.
    """
    model.eval()
    sizes = {**FULL_SIZES, **sizes}
    order = ["1_below_sota", "2_counting", "2_spatial", "2_word_order", "2_binding", "2_fine_grained",
             "3_distribution_shift", "4_choose_not_generate", "5_data_efficiency", "6_validation_reuse",
             "7_eval_set_choice", "8_bias", "9_few_shot", "typographic"]
    unknown = sorted(set(only or ()) - set(order))
    if unknown:
        raise ValueError(f"run_probes(only=...): unknown keys {unknown}; known: {', '.join(order)}")
    wanted = [key for key in order if only is None or key in only]
    if "7_eval_set_choice" in wanted:  # it reads the scores of the others
        wanted = order
    # one supervised baseline for limitations 1 and 3, trained only if one of them runs
    cnn = None
    if {"1_below_sota", "3_distribution_shift"} & set(wanted):
        cnn = train_shapes_cnn(seed=seed, image_size=model.config.image_size, **sizes["train_shapes_cnn"])
    measure = {  # each probe as a function of no arguments, so that only the wanted ones run
        "1_below_sota": lambda: supervised_vs_zeroshot(model, tokenizer, seed=seed, cnn=cnn,
                                                       **sizes["supervised_vs_zeroshot"]),
        "2_counting": lambda: counting(model, tokenizer, seed=seed, **sizes["counting"]),
        "2_spatial": lambda: spatial(model, tokenizer, seed=seed, **sizes["spatial"]),
        "2_word_order": lambda: shapes_word_order(model, tokenizer, seed=seed, **sizes["shapes_word_order"]),
        "2_binding": lambda: binding(model, tokenizer, seed=seed, **sizes["binding"]),
        "2_fine_grained": lambda: fine_grained(model, tokenizer, seed=seed, **sizes["fine_grained"]),
        "3_distribution_shift": lambda: distribution_shift(model, tokenizer, seed=seed, cnn=cnn,
                                                           **sizes["distribution_shift"]),
        "typographic": lambda: typographic(model, tokenizer, seed=seed, **sizes["typographic"]),
        "4_choose_not_generate": lambda: choose_not_generate(model, tokenizer, seed=seed,
                                                             **sizes["choose_not_generate"]),
        "5_data_efficiency": lambda: learning_curve(history, batch_size),
        "6_validation_reuse": lambda: validation_reuse(model, tokenizer, seed=seed, **sizes["validation_reuse"]),
        "8_bias": lambda: bias(model, tokenizer, seed=seed, **sizes["bias"]),
        "9_few_shot": lambda: few_shot(model, tokenizer, seed=seed, **sizes["few_shot"]),
    }
    with tqdm([key for key in wanted if key != "7_eval_set_choice"], desc="probes", disable=not progress,
              leave=False) as keys:  # closed (and cleared) before an error is printed
        results = {key: measure[key]() for key in keys}
    if "7_eval_set_choice" in wanted:
        results["7_eval_set_choice"] = eval_set_scores(results)
    return {key: results[key] for key in wanted}
