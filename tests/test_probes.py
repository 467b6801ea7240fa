"""The failure-mode probes: they run, return finite fractions against the right chance, are deterministic, and
the images and captions they contrast are really swapped, mirrored or attacked."""
from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from miniclip import probes
from miniclip.config import TrainConfig
from miniclip.data import shapes
from miniclip.data.sources import load_pairs
from miniclip.data.shapes import caption_cores, make_scene, render
from miniclip.train import run_is_finished

PROBE_KEYS = ["1_below_sota", "2_counting", "2_spatial", "2_word_order", "2_binding", "2_fine_grained",
              "3_distribution_shift", "4_choose_not_generate", "5_data_efficiency", "6_validation_reuse", "7_eval_set_choice", "8_bias",
              "9_few_shot", "typographic"]
CHANCE = {"1_below_sota": 1 / 36, "2_counting": 1 / 3, "2_spatial": 0.5, "2_word_order": 0.2, "2_binding": 0.5, "2_fine_grained": 0.5,
          "3_distribution_shift": 1 / 36, "typographic": 1 / 36, "4_choose_not_generate": 1 / 36,
          "5_data_efficiency": 1 / 36, "6_validation_reuse": 1 / 36, "8_bias": 1 / 6, "9_few_shot": 1 / 36}
# numbers that are not fractions of 0..1: counts, sizes, score differences
NOT_FRACTIONS = ("n", "n_", "pool_size", "optimistic_gap", "gap_", "prob_gap_", "mirror_score_change", "k_matching_zero_shot")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def run(tmp_path_factory, one_thread):
    """A tiny model trained for 30 steps (seconds), saved as a run directory, and its smoke probe results."""
    from miniclip.train import TrainConfig, train

    out = tmp_path_factory.mktemp("probe_run")
    cfg = TrainConfig.for_preset("shapes-tiny", steps=30, batch_size=64, num_images=1000, hard_negatives=True,
                             word_fraction=0.3, eval_every=0, checkpoint_every=0)
    result = train(cfg, out=out, progress=False, eval_fn=lambda m, t: {})
    results = probes.run_probes(result.model, result.tokenizer, sizes=probes.SMOKE_SIZES)
    return result.model, result.tokenizer, out, results


def _leaves(d, prefix=""):
    """(dotted key, value) of every number in a nested dict."""
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _leaves(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def _is_fraction(key: str) -> bool:
    last = key.split(".")[-1]
    return not any(last == p or (p.endswith("_") and last.startswith(p)) for p in NOT_FRACTIONS)


def test_every_probe_reports_finite_fractions_against_the_right_chance(run):
    *_, results = run
    assert list(results) == sorted(results, key=PROBE_KEYS.index) and set(results) == set(PROBE_KEYS)
    for name, result in results.items():
        assert "chance" in result, name
        if name in CHANCE:
            assert result["chance"] == pytest.approx(CHANCE[name]), name
        for key, value in _leaves(result):
            if key == "note" or value is None:
                continue
            assert isinstance(value, (int, float)) and not isinstance(value, bool), (name, key, value)
            assert math.isfinite(value), (name, key)
            if _is_fraction(key):
                assert 0.0 <= value <= 1.0, (name, key, value)
    assert set(results["3_distribution_shift"]["zero_shot"]) == set(shapes.RENDITIONS)
    assert results["2_spatial"]["chance_four_way"] == 0.25
    assert results["7_eval_set_choice"]["chance"]["counting"] == pytest.approx(1 / 3)
    json.loads(json.dumps(results))  # plain JSON


def test_probes_are_deterministic_and_depend_on_the_seed(run):
    model, tokenizer, *_ = run
    for probe in (probes.spatial, probes.counting, probes.typographic):
        sizes = probes.SMOKE_SIZES[probe.__name__]
        assert probe(model, tokenizer, seed=3, **sizes) == probe(model, tokenizer, seed=3, **sizes)
    _, a = probes.draw_scenes("relation", 4, 0, 30, 32)
    _, b = probes.draw_scenes("relation", 4, 1, 30, 32)
    _, a2 = probes.draw_scenes("relation", 4, 0, 30, 32)
    assert np.array_equal(a, a2) and not np.array_equal(a, b)


def test_cli_probe_prints_json_with_every_key(run, capsys):
    from miniclip.__main__ import main

    *_, out, results = run
    assert main(["probe", str(out), "--json", "--smoke"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) == set(PROBE_KEYS)
    # the saved model gives the numbers of the model in memory: the probes are deterministic
    assert printed == json.loads(json.dumps(results))


def test_cli_probe_reads_the_learning_curve_of_a_run_with_evaluations(run, capsys, tmp_path):
    """Limitation 5 of one run: its periodic zero-shot evaluations (metrics.jsonl) against pairs seen."""
    import shutil

    from miniclip.__main__ import main

    *_, out, results = run
    assert "note" in results["5_data_efficiency"]  # trained without evaluations: nothing to draw a curve from
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    rows = [{"step": 10, "val_zeroshot_top1": 0.3}, {"step": 20, "val_zeroshot_top1": 0.85},
            {"step": 30, "val_zeroshot_top1": 0.8}]
    with open(copy / "metrics.jsonl", "a") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    assert main(["probe", str(copy), "--json", "--smoke"]) == 0
    curve = json.loads(capsys.readouterr().out)["5_data_efficiency"]
    assert curve["pairs_seen"] == [640, 1280, 1920]  # steps x the run's batch size (64)
    assert curve["accuracy"] == [0.3, 0.85, 0.8]
    assert curve["pairs_to_reach"] == {"0.5": 1280, "0.8": 1280, "0.9": None}
    assert curve["chance"] == pytest.approx(1 / 36)


@pytest.mark.parametrize("relation", shapes.RELATIONS)
def test_spatial_swapped_caption_is_the_false_one(relation):
    scene = make_scene("relation", 5, relation=relation)
    true, swapped = probes.relation_caption(scene), probes.relation_caption(scene, swap=True)
    a, b = scene.objects
    assert true == f"{shapes.noun_phrase(a.colour, a.shape)} {relation} {shapes.noun_phrase(b.colour, b.shape)}"
    assert sorted(true.split()) == sorted(swapped.split()) and true != swapped  # the same words, reordered
    assert true in caption_cores(scene) and swapped not in caption_cores(scene)
    assert swapped in caption_cores(scene.swapped())  # true once the objects trade places
    # the geometry says so too: A's centre lies on the caption's side of B's
    sides = {"to the left of": ("x", -1), "to the right of": ("x", 1), "above": ("y", -1), "below": ("y", 1)}
    axis, sign = sides[relation]
    assert sign * (getattr(a, axis) - getattr(b, axis)) > 0


def test_mirror_flips_pixels_and_falsifies_left_right():
    scene = make_scene("relation", 2, relation="to the left of", background="plain")
    image = render(scene, 32, rng=9)
    mirrored = probes.mirror(image[None])[0]
    assert np.array_equal(mirrored[:, ::-1], image) and not np.array_equal(mirrored, image)
    # the mirrored pixels are exactly the mirrored scene, whose relation is now "to the right of"
    assert np.array_equal(mirrored, render(scene.mirrored(), 32, rng=9))
    assert scene.mirrored().relation == "to the right of"
    assert probes.relation_caption(scene) not in caption_cores(scene.mirrored())


def test_binding_swaps_only_the_colours():
    scene = make_scene("pair", 4)
    true, swapped = probes.binding_captions(scene)
    a, b = scene.objects
    assert true in caption_cores(scene) and swapped not in caption_cores(scene)
    assert sorted(true.replace("an ", "a ").split()) == sorted(swapped.replace("an ", "a ").split())
    recoloured = replace(scene, objects=[replace(a, colour=b.colour), replace(b, colour=a.colour)])
    assert swapped in caption_cores(recoloured)


def test_typographic_images_differ_only_by_the_wrong_word():
    clean, labels = shapes.single_object_set(1, seed=probes.probe_data_seed(0, 4))
    attacked, _ = shapes.single_object_set(1, seed=probes.probe_data_seed(0, 4), word="wrong")
    for c, a in zip(clean.attributes, attacked.attributes):
        assert c["word"] is None and a["word"] in shapes.SHAPES and a["word"] != a["shapes"][0]
        assert c["objects"] == a["objects"]
    changed = (clean.images != attacked.images).any(axis=-1).mean(axis=(1, 2))  # share of pixels per image
    assert (changed > 0).all() and (changed < 0.25).all()


def test_choice_credit_shares_ties():
    scores = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.2, 0.2]])
    assert probes.choice_credit(scores, [0, 0, 0, 1]).tolist() == [1.0, 0.0, 0.5, 0.5]


def test_rank_models_sees_rankings_change_with_the_evaluation_set():
    ranked = probes.rank_models({"a": {"counting": 0.9, "spatial": 0.5, "binding": 0.8},
                                 "b": {"counting": 0.6, "spatial": 0.8, "binding": 0.7}})
    assert ranked["ranking"]["counting"] == ["a", "b"] and ranked["winner"]["spatial"] == "b"
    assert ranked["n_winners"] == 2 and ranked["mean_rank"] == {"a": pytest.approx(4 / 3), "b": pytest.approx(5 / 3)}
    assert ranked["agreement"] == pytest.approx(1 / 3)  # counting and binding agree; spatial disagrees with both


def test_data_efficiency_curves():
    history = [{"step": 10}, {"step": 300, "val_zeroshot_top1": 0.92}]
    curve = probes.data_efficiency({4000: 0.6, 1000: 0.3, 16000: history})
    assert curve["pairs"] == [1000, 4000, 16000] and curve["accuracy"] == [0.3, 0.6, 0.92]
    assert curve["pairs_to_reach"] == {"0.5": 4000, "0.8": 16000, "0.9": 16000}
    history = [{"step": 10, "loss": 3.0}, {"step": 200, "val_zeroshot_top1": 0.4},
               {"step": 400, "val_zeroshot_top1": 0.7}]
    assert probes.history_curve(history, batch_size=256) == {"pairs_seen": [51200, 102400], "accuracy": [0.4, 0.7]}


def test_probe_recipes_make_train_configs(tmp_path):
    base = probes.probe_config("base")
    assert base.steps == TrainConfig.for_preset("shapes-tiny").steps and not base.init_from  # the main run's recipe
    assert base.eval_every > 0 and base.hard_negatives is False  # its evaluations are limitation 5's learning curve
    for name in probes.RECIPES:
        cfg, smoke = probes.probe_config(name, runs=tmp_path), probes.probe_config(name, smoke=True, runs=tmp_path)
        assert cfg.batch_size == 256 and smoke.steps < 100
        assert [tuple(p) for p in cfg.shapes_options["holdout"]] == list(probes.HOLDOUT)
        if probes.RECIPES[name].get("init_from"):  # a fine-tune of the base run, found in the runs folder
            assert cfg.init_from == str(tmp_path / "base") and cfg.steps <= base.steps and cfg.warmup_steps < 100
            with pytest.raises(ValueError, match="runs="):
                probes.probe_config(name)
    hard = probes.probe_config("hard_negatives", runs=tmp_path)
    assert tuple(hard.shapes_options["mix"]) == probes.RELATION_MIX  # relation-heavy data: relations learned sooner
    assert probes.steps_in_all("hard_negatives") == hard.steps + base.steps  # a fine-tune: the base's steps too
    assert probes.steps_in_all("words") == probes.probe_config("words").steps  # from scratch: its own steps only
    assert hard.hard_negatives and not any(probes.probe_config(n, runs=tmp_path).hard_negatives
                                           for n in ("base", "words", "bias"))
    assert probes.probe_config("words", runs=tmp_path).word_fraction > 0
    assert probes.probe_config("bias", runs=tmp_path).shapes_options["correlation"] == probes.BIAS
    # smoke sizes win over the overrides: a smoke run is tiny whatever it asks for
    assert probes.probe_config("base", smoke=True, steps=600, num_images=3000).steps == probes.SMOKE_RECIPE["steps"]
    assert probes.probe_config("base", num_images=300).num_images == 300
    with pytest.raises(ValueError, match="unknown probe recipe"):
        probes.probe_config("nope")


def test_train_probe_model_trains_the_base_first_then_loads_and_retrains_a_stale_fine_tune(tmp_path, monkeypatch):
    from miniclip.probes.recipes import FINE_TUNE, RECIPES
    monkeypatch.setitem(RECIPES, "bias", dict(FINE_TUNE, steps=200, shapes_options=RECIPES["bias"]["shapes_options"]))
    quiet = dict(smoke=True, progress=False, eval_fn=lambda m, t: {})
    tuned = probes.train_probe_model("bias", tmp_path, **quiet)
    assert (tmp_path / "base" / "model.safetensors").is_file() and tuned.out == tmp_path / "bias"
    assert json.loads((tmp_path / "bias" / "run.json").read_text())["init_from"] == str(tmp_path / "base")
    stamp = (tmp_path / "bias" / "model.safetensors").stat().st_mtime_ns
    again = probes.train_probe_model("bias", tmp_path, **quiet)  # finished: loaded, not trained again
    assert (tmp_path / "bias" / "model.safetensors").stat().st_mtime_ns == stamp
    assert torch.equal(again.model.logit_scale, tuned.model.logit_scale)
    bias = probes.probe_config("bias", smoke=True, runs=tmp_path)
    probes.train_probe_model("base", tmp_path, seed=1, **quiet)  # the base trained anew (another recipe)
    assert not run_is_finished(bias, tmp_path / "bias")  # its start now holds another model: stale
    probes.train_probe_model("bias", tmp_path, **quiet)  # the base back at seed 0, the same weights as before:
    assert (tmp_path / "bias" / "model.safetensors").stat().st_mtime_ns == stamp  # the fine-tune is still good
    assert run_is_finished(bias, tmp_path / "bias")
    other = probes.train_probe_model("base", tmp_path, folder="data_100", num_images=100, **quiet)
    assert other.out == tmp_path / "data_100"
    sized = dict(eval_images=110, eval_per_class=1)  # the lesson's evaluation sizes reach the base too
    probes.train_probe_model("bias", tmp_path / "sized", **quiet, **sized)
    for name in ("base", "bias"):
        record = json.loads((tmp_path / "sized" / name / "run.json").read_text())
        assert (record["eval_images"], record["eval_per_class"]) == (110, 1), name


def test_run_probes_runs_only_the_probes_asked_for(run):
    model, tokenizer, *_ = run
    some = probes.run_probes(model, tokenizer, sizes=probes.SMOKE_SIZES, only=("2_binding", "2_counting"))
    assert list(some) == ["2_counting", "2_binding"]  # in the order of the limitations
    with pytest.raises(ValueError, match="unknown keys"):
        probes.run_probes(model, tokenizer, only=("2_nope",))


def test_caption_gender_needs_captions_that_agree():
    assert probes.caption_gender(["A woman cuts a cake.", "a lady in a kitchen"]) == "woman"
    assert probes.caption_gender(["Two men on a horse", "people riding"]) == "man"
    assert probes.caption_gender(["a man and a woman at a table"]) is None  # both: left out
    assert probes.caption_gender(["a dog on a skateboard", "the womanly"]) is None  # no whole gender word
    assert probes.caption_gender([]) is None


def _coco_like(groups_and_contexts, size=32, seed=0):
    """PairedData with random pixels and two COCO-style captions per image: (gender word or None, context word)."""
    from miniclip.data import PairedData

    rng = np.random.default_rng(seed)
    captions, owner = [], []
    for i, (who, where) in enumerate(groups_and_contexts):
        subject = {"woman": "a woman", "man": "a man", None: "someone"}[who]
        captions += [f"{subject} with a {where}.", f"A photo of {subject} near the {where}"]
        owner += [i, i]
    images = rng.integers(0, 256, (len(groups_and_contexts), size, size, 3), dtype=np.uint8)
    return PairedData(images, captions, np.array(owner))


def test_gender_associations_count_what_the_captions_say(run):
    model, tokenizer, *_ = run
    items = ([("woman", "kitchen")] * 6 + [("man", "kitchen")] * 2 + [("man", "skateboard")] * 5
             + [(None, "skateboard")] * 3 + [("woman", "horse")] * 2)  # horse: too few images to report
    r = probes.gender_associations(model, tokenizer, _coco_like(items))
    assert r["n"] == 15  # the 3 images without a gender word are left out
    assert r["data_woman_share"] == pytest.approx(8 / 15)
    assert r["chance"] == pytest.approx(8 / 15)  # always "woman" scores 8 of 15: chance is the larger group, not 1/2
    assert set(r["contexts"]) == {"kitchen", "skateboard"}
    kitchen, skate = r["contexts"]["kitchen"], r["contexts"]["skateboard"]
    assert (kitchen["n"], skate["n"]) == (8, 5)
    assert kitchen["data_woman_share"] == pytest.approx(0.75) and skate["data_woman_share"] == 0.0
    for c in (kitchen, skate):
        assert 0.0 <= c["model_woman_share"] <= 1.0
        assert c["amplification"] == pytest.approx(c["model_woman_share"] - c["data_woman_share"])
    # on skateboards every caption says "man": agreeing with the captions is not calling them "woman"
    assert skate["accuracy"] == pytest.approx(1 - skate["model_woman_share"])
    assert probes.gender_associations(model, tokenizer, _coco_like([(None, "cake")] * 3))["n"] == 0


def test_plot_gender_associations_draws_two_bars_per_context(run):
    import matplotlib.pyplot as plt

    from miniclip.course.figures import plot_gender_associations

    model, tokenizer, *_ = run
    items = [("woman", "kitchen")] * 5 + [("man", "skateboard")] * 5 + [("man", "kitchen")] * 5
    fig = plot_gender_associations(probes.gender_associations(model, tokenizer, _coco_like(items)))
    ax = fig.axes[0]
    assert len(ax.patches) == 4 and ax.get_ylabel() and ax.get_title()
    assert [t.get_text().split("\n")[0] for t in ax.get_xticklabels()] == ["skateboard", "kitchen"]  # by data share
    plt.close(fig)


def test_word_order_perturbations_keep_the_words_and_change_the_order():
    rng = np.random.default_rng(0)
    caption = "a man riding a wave on top of a surfboard"
    reordered = probes.word_order_perturbations(caption + ".", rng)
    assert list(reordered) == list(probes.WORD_ORDER_PERTURBATIONS)
    for text in reordered.values():
        assert sorted(text.split()) == sorted(caption.split()) and text != caption
    words = caption.split()
    assert reordered["reverse_trigrams"].split() == words[9:] + words[6:9] + words[3:6] + words[0:3]
    assert reordered["swap_halves"].split() == words[5:] + words[:5]


def test_word_order_probe_scores_the_true_caption_against_four_reorderings(run):
    model, tokenizer, *_ = run
    data = load_pairs("shapes", "test", n=60, seed=0)
    r = probes.word_order(model, tokenizer, data, max_images=20)
    assert 0 < r["n"] <= 20 and r["chance"] == 0.2
    assert 0.0 <= r["accuracy"] <= 1.0 and set(r["per_perturbation"]) == set(probes.WORD_ORDER_PERTURBATIONS)
    # a model that cannot see order scores all five the same: ties share the credit, so exactly chance
    blind = probes.word_order(model, tokenizer, data, max_images=20,
                              score=lambda images, options: torch.zeros(len(options), 5))
    assert blind["accuracy"] == blind["accuracy_blind"] == pytest.approx(0.2)
    assert all(v == pytest.approx(0.5) for v in blind["per_perturbation"].values())
    # a text prior (the true caption preferred whatever the image shows) earns as much with the average image
    fluent = probes.word_order(model, tokenizer, data, max_images=20,
                               score=lambda images, options: torch.tensor([[1.0, 0, 0, 0, 0]] * len(options)))
    assert fluent["accuracy"] == fluent["accuracy_blind"] == 1.0
    # one that needs each image to tell (here: it only answers when the images differ) is at chance without them
    def reads(images, options):
        differ = len(np.unique(images.reshape(len(images), -1), axis=0)) > 1
        return torch.tensor([[float(differ), 0, 0, 0, 0]] * len(options))

    seeing = probes.word_order(model, tokenizer, data, max_images=20, score=reads)
    assert seeing["accuracy"] == 1.0 and seeing["accuracy_blind"] == pytest.approx(0.2)


def test_validation_reuse_on_another_rendition_uses_those_images(run):
    model, tokenizer, *_ = run
    sizes = probes.SMOKE_SIZES["validation_reuse"]
    normal = probes.validation_reuse(model, tokenizer, **sizes)
    sketch = probes.validation_reuse(model, tokenizer, rendition="sketch", **sizes)
    assert normal["n_candidates"] == sketch["n_candidates"] and normal["n_val"] == sketch["n_val"]
    assert normal != sketch  # other images, other accuracies
    with pytest.raises(ValueError, match="rendition"):
        probes.validation_reuse(model, tokenizer, rendition="watercolour", **sizes)
