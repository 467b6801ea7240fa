"""Limitation 4: CLIP chooses among captions; it cannot generate one. Here it "describes" an image by searching
a pool of captions for the one it matches best.

    best_captions(model, tokenizer, images, pool)        # the best caption of `pool` for each image
    choose_not_generate(model, tokenizer)["unseen_top1"] # can it name a colour-shape combination it never saw?
"""
from __future__ import annotations

from miniclip.data import shapes
from miniclip.data.shapes import COLOURS, SHAPES, caption_core, class_names, noun_phrase
from miniclip.encode import encode_images, encode_texts
from miniclip.probes.recipes import HOLDOUT
from miniclip.probes.scoring import average, draw_scenes, probe_data_seed


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


def choose_not_generate(model, tokenizer, pool_images: int = 1000, unseen_images: int = 50, seed: int = 0,
                        holdout=HOLDOUT) -> dict:
    """CLIP can only pick a caption from a list someone wrote; these probes make it "describe" by search.

      caption_top1     `pool_images` held-out scenes of every kind; the pool is every distinct caption generated
                       for them; right when the best caption is true of the image (chance: the mean share of
                       true captions in the pool, chance_caption_top1)
      unseen_top1      `unseen_images` objects of each `holdout` (colour, shape) combination, never seen in
                       training if the model was trained with shapes_options={"holdout": HOLDOUT}: is
                       "a {colour} {shape}" the best of the 36? seen_top1 is the same for the other 34 classes
                       (unseen_images // 2 per class). Chance 1/36.
      unseen_top1_grammar   the same search over all 144 single-object captions of the grammar (sizes, "one");
                       right when the best caption names the right colour and shape (chance 1/36)
    """
    size = model.config.image_size
    data = shapes.generate(pool_images, seed=probe_data_seed(seed, 5), image_size=size)
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
    unseen_hits, grammar_hits = [], []
    grammar = single_object_grammar()
    for k, (colour, shape) in enumerate(holdout):
        scenes, images = draw_scenes("single", unseen_images, seed, 60 + k, size, colours=colour, shapes=shape)
        described = best_captions(model, tokenizer, images, class_captions)
        unseen_hits += [c == noun_phrase(colour, shape) for c in described]
        grammar_hits += [c.endswith(f"{colour} {shape}") for c in best_captions(model, tokenizer, images, grammar)]
    seen, seen_labels = shapes.single_object_set(max(1, unseen_images // 2), seed=probe_data_seed(seed, 6),
                                                 image_size=size)
    held = {tuple(p) for p in holdout}
    keep = [i for i, y in enumerate(seen_labels) if tuple(names[y].split(" ")) not in held]
    seen_best = best_captions(model, tokenizer, seen.images[keep], class_captions)
    return {
        "caption_top1": average(hits),
        "chance_caption_top1": average(chances),
        "pool_size": len(pool),
        "unseen_top1": average(unseen_hits),
        "unseen_top1_grammar": average(grammar_hits),
        "seen_top1": average([c == class_captions[seen_labels[i]] for c, i in zip(seen_best, keep)]),
        "n_unseen": len(unseen_hits),
        "chance": 1 / len(names),
    }
