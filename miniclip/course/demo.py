"""`make demo`: train shapes-tiny on the shapes world, evaluate it, draw the figures: about 100 s on 2 CPU cores
(the README's timing table has the measured figure).

runs/demo/ then holds the model, metrics.json and three figures: history.png (loss, temperature and the
zero-shot accuracy measured every EVAL_EVERY steps), similarity.png (8 held-out images against their captions),
confusion.png (zero-shot predictions of the 36 colour x shape classes).
"""
from __future__ import annotations

from pathlib import Path

import torch

from miniclip.checkpoint import atomic_write_json
from miniclip.config import TrainConfig
from miniclip.course.figures import plot_confusion, plot_history, plot_similarity, save_figure
from miniclip.data import shapes
from miniclip.data.sources import SPLIT_SEED_OFFSET, load_pairs
from miniclip.encode import encode_images, encode_texts
from miniclip.evaluate import evaluate_suite
from miniclip.train import train
from miniclip.zeroshot import SHAPES_TEMPLATES, evaluate_zeroshot


EVAL_EVERY = 50  # steps between two points of the zero-shot curve (each costs ~0.2 s)


def demo(out="runs/demo", steps: int | None = None, seed: int = 0, overwrite: bool = False, **overrides) -> dict:
    """Train, evaluate and draw into `out`; returns the metrics (also written to out/metrics.json).

    An earlier demo in `out` is kept unless overwrite=True (`miniclip demo --overwrite`).
    overrides: other TrainConfig fields (e.g. num_images=2000 for a quick test).
    """
    out = Path(out)
    if out.is_dir() and any(out.iterdir()) and not overwrite:  # train() would offer --resume, which demo has not
        raise FileExistsError(f"{out} is not empty (an earlier demo?): replace it with --overwrite, or choose another "
                              "--out")
    cfg = TrainConfig.for_preset("shapes-tiny", **{"seed": seed, "eval_every": EVAL_EVERY,
                                                   **({"steps": steps} if steps else {}), **overrides})
    # The curve: zero-shot top-1 on held-out single-object images (cfg.eval_per_class, 20, per class), measured
    # during training: the same images as evaluate_suite's zero-shot.
    images, labels = shapes.single_object_set(cfg.eval_per_class, seed=seed + SPLIT_SEED_OFFSET["val"],
                                              image_size=cfg.model_config().image_size)

    def zero_shot(model, tokenizer) -> dict:
        top1 = evaluate_zeroshot(model, tokenizer, images.images, labels, shapes.class_names(), SHAPES_TEMPLATES)["top1"]
        return {"zeroshot_top1": top1}

    result = train(cfg, out=out, overwrite=overwrite, eval_fn=zero_shot)
    model, tokenizer = result.model, result.tokenizer
    save_figure(plot_history(result.history, title="shapes-tiny demo"), out / "history.png")
    metrics = evaluate_suite(model, tokenizer, "shapes", seed=seed)

    # Eight held-out images against their own captions: a good model lights up the diagonal.
    val = load_pairs("shapes", "val", n=8, seed=seed, image_size=model.config.image_size)
    first_captions = [val.captions_of(i)[0] for i in range(8)]
    with torch.no_grad():
        sim = encode_images(model, val.images) @ encode_texts(model, tokenizer, first_captions).t()  # [8, 8] cosines
    save_figure(plot_similarity(sim, val.images, first_captions, title="cosine similarity, held-out images x captions"),
                out / "similarity.png")

    # The zero-shot classifier on single-object images: which classes get confused?
    zs = evaluate_zeroshot(model, tokenizer, images.images, labels, shapes.class_names(), SHAPES_TEMPLATES)
    save_figure(plot_confusion(zs["confusion"], shapes.class_names(),
                               title=f"zero-shot confusion, top-1 {100 * zs['top1']:.1f}%"), out / "confusion.png")
    atomic_write_json(out / "metrics.json", metrics)
    return metrics
