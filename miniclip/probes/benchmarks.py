"""Limitations 6 and 7: how benchmarks flatter a model. Choosing prompts on a validation set that is queried many
times overfits to it, and which evaluation sets one reports decides which model looks best.

    validation_reuse(model, tokenizer)["optimistic_gap"]   # how much better the chosen prompts look than they are
    rank_models({"a": run_probes(...), "b": ...})         # does the winner depend on the evaluation set?
"""
from __future__ import annotations

import itertools

import numpy as np
import torch
import torch.nn.functional as F

from miniclip.data import shapes
from miniclip.data.shapes import RENDITIONS, class_names
from miniclip.encode import encode_images, encode_texts
from miniclip.probes.scoring import average, classify, probe_data_seed

# Limitation 6: prompt templates chosen on a validation set
CANDIDATE_TEMPLATES = (
    "a photo of a {}.", "a {}.", "a drawing of a {}.", "a picture of a {}.", "an image of a {}.",
    "a photo of one {}.", "{}", "one {}", "the {}", "a small {}", "a large {}", "a photo of a small {}",
    "a photo of a large {}", "a photo of the {}.", "a good photo of a {}.", "a bad photo of a {}.",
    "a sketch of a {}.", "this is a {}", "there is a {}", "a {} on a grey background",
)


def validation_reuse(model, tokenizer, val_per_class: int = 3, test_per_class: int = 20, ensembles: int = 40,
                     templates=CANDIDATE_TEMPLATES, seed: int = 0, rendition: str = "normal") -> dict:
    """Choose the best prompt template set on a small validation split, then look at it on a large test split.

    The paper admits that developing CLIP meant querying full validation sets many times, so its zero-shot
    numbers are not truly zero-shot. Here: every single one of `templates` and `ensembles` random 3-template
    ensembles are scored on `val_per_class` images per class; the winner's val accuracy is optimistic. The test
    split has `test_per_class` images per class. Returns val_accuracy_best, test_accuracy_best, optimistic_gap
    (= val - test of the winner), test_accuracy_mean over all candidates, test_accuracy_oracle (the best on
    test), n_candidates.
    """
    size = model.config.image_size
    names = class_names()
    rng = np.random.default_rng([seed, 70])
    candidates = [(t,) for t in range(len(templates))]
    candidates += [tuple(sorted(rng.choice(len(templates), 3, replace=False).tolist())) for _ in range(ensembles)]
    text = encode_texts(model, tokenizer, [t.format(name) for name in names for t in templates]).cpu()
    text = text.view(len(names), len(templates), -1)  # [K, T, D]
    splits = {}
    for split, (n, k) in {"val": (val_per_class, 7), "test": (test_per_class, 8)}.items():
        data, labels = shapes.single_object_set(n, seed=probe_data_seed(seed, k), image_size=size, rendition=rendition)
        splits[split] = (encode_images(model, data.images).cpu(), torch.as_tensor(labels))
    accuracy = {"val": [], "test": []}
    for cand in candidates:
        classifier = F.normalize(text[:, list(cand)].mean(dim=1), dim=-1).t()  # [D, K]
        for split, (features, labels) in splits.items():
            accuracy[split].append(average(classify(features, classifier) == labels))
    best = int(np.argmax(accuracy["val"]))  # the first of equals
    return {
        "val_accuracy_best": accuracy["val"][best],
        "test_accuracy_best": accuracy["test"][best],
        "optimistic_gap": accuracy["val"][best] - accuracy["test"][best],
        "val_accuracy_mean": average(accuracy["val"]),
        "test_accuracy_mean": average(accuracy["test"]),
        "test_accuracy_oracle": max(accuracy["test"]),
        "n_candidates": len(candidates),
        "n_val": len(splits["val"][1]),
        "n_test": len(splits["test"][1]),
        "chance": 1 / len(names),
    }


# Limitation 7: the choice of evaluation sets
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
    mean_rank = {m: average([ranking[s].index(m) + 1 for s in sets]) for m in models}
    model_pairs = list(itertools.combinations(models, 2))

    def order(s):
        return [np.sign(scores[a][s] - scores[b][s]) for a, b in model_pairs]

    set_pairs = list(itertools.combinations(sets, 2))
    agreement = average([order(s) == order(t) for s, t in set_pairs]) if set_pairs else 1.0
    return {"ranking": ranking, "winner": {s: ranking[s][0] for s in sets}, "mean_rank": mean_rank,
            "n_winners": len({ranking[s][0] for s in sets}), "agreement": agreement}
