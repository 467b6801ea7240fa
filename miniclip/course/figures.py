"""Plots for looking at data, training and evaluation. Every function returns a matplotlib Figure.

Nothing here calls plt.show(). In a notebook with the inline backend a new figure is shown when the cell ends,
so write `fig = show_pairs(...)` (or end the line with `;`) to see it once; in a script, call plt.show() or
save_figure(fig, "out.png"). Close figures you no longer need (plt.close(fig)) when making many in a loop.
"""
from __future__ import annotations

import math
import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from miniclip.checkpoint import atomic_path


def _numpy(x) -> np.ndarray:
    """A tensor (any device, with or without grad) or array-like -> numpy array."""
    if hasattr(x, "detach"):
        x = x.detach().float().cpu() if x.dtype.is_floating_point else x.detach().cpu()
    return np.asarray(x)


def _image(img) -> np.ndarray:
    """One image as uint8 [S, S, 3] (or a tensor of it) -> numpy uint8 for imshow."""
    img = _numpy(img)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"expected an image of shape [S, S, 3], got {list(img.shape)}")
    return img


def show_pairs(images, captions: list[str], ncols: int = 4, title: str = "Image-caption pairs",
               width: int = 24) -> plt.Figure:
    """A grid of images uint8 [N, S, S, 3], each under its caption (wrapped to `width` characters)."""
    n = len(images)
    if n != len(captions):
        raise ValueError(f"{n} images but {len(captions)} captions")
    ncols = max(1, min(ncols, n))
    nrows = max(1, math.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.4 * ncols, 2.6 * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(_image(images[i]), interpolation="nearest")
            ax.set_title(textwrap.fill(captions[i], width), fontsize=9)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_similarity(similarity, images, captions: list[str], title: str = "Cosine similarity",
                    annotate: bool | None = None, fmt: str = ".2f") -> plt.Figure:
    """Heatmap of similarity [N_img, N_txt]: image thumbnails along the left (rows), captions along the bottom.

    similarity: cosines or logits (a tensor or array); images uint8 [N_img, S, S, 3]; captions N_txt strings.
    Values are written in the cells when annotate (default: when both sides have at most 10 entries).
    """
    sim = _numpy(similarity).astype(np.float32)
    n_img, n_txt = sim.shape
    if len(images) != n_img or len(captions) != n_txt:
        raise ValueError(f"similarity is {n_img} x {n_txt} but got {len(images)} images and {len(captions)} captions")
    annotate = max(n_img, n_txt) <= 10 if annotate is None else annotate
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * n_txt, 1.5 + 0.75 * n_img))
    heat = ax.imshow(sim, cmap="viridis", aspect="equal")
    # Thumbnails drawn in the heatmap's own axes, one cell to the left of each row (as OpenAI's notebook does).
    for i in range(n_img):
        ax.imshow(_image(images[i]), extent=(-1.6, -0.6, i + 0.5, i - 0.5), interpolation="nearest")
    ax.set_xlim(-1.7, n_txt - 0.5)
    ax.set_ylim(n_img - 0.5, -0.5)
    ax.set_yticks([])
    ax.set_xticks(range(n_txt))
    ax.set_xticklabels([textwrap.fill(textwrap.shorten(c, 90), 30) for c in captions], rotation=45, ha="right",
                       rotation_mode="anchor", fontsize=8)
    if annotate:
        middle = (np.nanmax(sim) + np.nanmin(sim)) / 2
        for i in range(n_img):
            for j in range(n_txt):
                ax.text(j, i, format(sim[i, j], fmt), ha="center", va="center", fontsize=8,
                        color="black" if sim[i, j] > middle else "white")
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    ax.set_xlabel("captions")
    ax.set_ylabel("images")
    ax.set_title(title)
    fig.colorbar(heat, ax=ax, fraction=0.046, pad=0.04, label="similarity")
    fig.tight_layout()
    return fig


# Keys of a training history record that plot_history treats as bookkeeping, not evaluation metrics.
_NOT_METRICS = {"step", "loss", "temperature", "logit_scale", "scale", "lr", "epoch", "time", "elapsed", "seconds",
                "wall_s", "samples", "pairs_per_s"}


def _scale_of(record: dict):
    """1 / T from a history record: `scale` is 1 / T, `logit_scale` is ln(1 / T) (the parameter), `temperature` is T."""
    if "scale" in record:
        return float(record["scale"])
    if "logit_scale" in record:
        return math.exp(float(record["logit_scale"]))
    if "temperature" in record:
        return 1.0 / float(record["temperature"])
    return None


def plot_history(history: list[dict], title: str = "Training", metrics: list[str] | None = None) -> plt.Figure:
    """Loss, 1 / temperature and evaluation metrics against step, one panel each.

    history: records {"step", "loss", and one of "scale" (1 / T), "logit_scale" (ln 1 / T, the model's parameter)
    or "temperature" (T); optionally "val_loss" (drawn with the loss) and evaluation metrics}, as miniclip.train
    logs them (evaluation rows may hold only "step" and val_* keys). metrics: keys for the third panel; by default
    every other numeric key except counts (num_*), losses and bookkeeping (lr, pairs_per_s, ...).
    """
    if not history:
        raise ValueError("plot_history: the history is empty")
    if metrics is None:
        metrics = sorted({k for r in history for k, v in r.items()
                          if k not in _NOT_METRICS and "num_" not in k and not k.endswith("loss")
                          and isinstance(v, (int, float)) and not isinstance(v, bool)})
    npanels = 3 if metrics else 2
    fig, axes = plt.subplots(1, npanels, figsize=(4.5 * npanels, 3.5), squeeze=False)
    axes = axes[0]

    def series(key, fn=float):
        points = [(r["step"], fn(r)) for r in history if key(r)]
        return [p[0] for p in points], [p[1] for p in points]

    steps, loss = series(lambda r: "loss" in r, lambda r: float(r["loss"]))
    axes[0].plot(steps, loss, label="train")
    v_steps, v_loss = series(lambda r: "val_loss" in r, lambda r: float(r["val_loss"]))
    if v_steps:
        axes[0].plot(v_steps, v_loss, "o-", label="validation")
        axes[0].legend()
    axes[0].set(xlabel="step", ylabel="loss (nats)", title="contrastive loss")

    s_steps, scale = series(lambda r: _scale_of(r) is not None, _scale_of)
    axes[1].plot(s_steps, scale, color="tab:orange")
    axes[1].set(xlabel="step", ylabel="1 / T (= exp(logit_scale))", title="temperature")

    if metrics:
        curves = {key: series(lambda r, key=key: key in r, lambda r, key=key: float(r[key])) for key in metrics}
        # Recalls come in percent, accuracies as fractions: when both are there, fractions are drawn x100.
        is_fraction = {key: all(0 <= v <= 1 for v in ys) for key, (_, ys) in curves.items()}
        mixed = any(is_fraction.values()) and not all(is_fraction.values())
        for key, (m_steps, values) in curves.items():
            if mixed and is_fraction[key]:
                axes[2].plot(m_steps, [100 * v for v in values], "o-", label=f"{key} (x100)")
            else:
                axes[2].plot(m_steps, values, "o-", label=key)
        axes[2].legend(fontsize=7)
        axes[2].set(xlabel="step", ylabel="metric (%)" if mixed else "metric", title="evaluation")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_confusion(confusion, classnames: list[str], title: str = "Confusion matrix", normalize: bool = True,
                   annotate: bool | None = None) -> plt.Figure:
    """Confusion counts [K, K] (rows = true class, columns = predicted) as a heatmap.

    normalize: colour by the share of each true class (rows sum to 1); counts are written in the cells when
    annotate (default: K <= 12).
    """
    counts = _numpy(confusion).astype(np.int64)
    k = len(classnames)
    if counts.shape != (k, k):
        raise ValueError(f"confusion must be [{k}, {k}] for {k} class names, got {list(counts.shape)}")
    shown = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1) if normalize else counts
    annotate = k <= 12 if annotate is None else annotate
    size = 2.5 + 0.35 * k
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    heat = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    ax.set_xticks(range(k))
    ax.set_xticklabels(classnames, rotation=90, fontsize=8)
    ax.set_yticks(range(k))
    ax.set_yticklabels(classnames, fontsize=8)
    if annotate:
        top = shown.max() if shown.size else 0
        for i in range(k):
            for j in range(k):
                if counts[i, j]:
                    ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if shown[i, j] > top / 2 else "black")
    ax.set(xlabel="predicted class", ylabel="true class", title=title)
    fig.colorbar(heat, ax=ax, fraction=0.046, pad=0.04, label="share of the true class" if normalize else "count")
    fig.tight_layout()
    return fig


def plot_probabilities(probs, classnames: list[str], title: str = "Zero-shot probabilities",
                       top: int | None = 10) -> plt.Figure:
    """Horizontal bars of probs [K] (e.g. logits.softmax(-1)[0]), largest at the top; only the `top` largest."""
    p = _numpy(probs).astype(np.float64).reshape(-1)
    if len(p) != len(classnames):
        raise ValueError(f"{len(p)} probabilities but {len(classnames)} class names")
    order = np.argsort(-p, kind="stable")[: top or len(p)]
    fig, ax = plt.subplots(figsize=(5.5, 0.8 + 0.3 * len(order)))
    ax.barh(range(len(order)), p[order], color="tab:blue")
    ax.set_yticks(range(len(order)))
    ax.set_yticklabels([classnames[i] for i in order])
    ax.invert_yaxis()  # the most probable class on top
    ax.set_xlim(0, max(1.0, float(p.max()) if len(p) else 1.0))
    for y, i in enumerate(order):
        ax.text(p[i], y, f" {p[i]:.1%}", va="center", fontsize=8)
    ax.set(xlabel="probability", ylabel="class", title=title)
    fig.tight_layout()
    return fig


def plot_retrieval(query, results, scores, title: str | None = None, width: int = 22,
                   per_row: int = 5) -> plt.Figure:
    """A query and its results, each result titled with its score, at most `per_row` results to a row (so that
    k = 10 stays readable).

    query: a string (text -> image search) or an image uint8 [S, S, 3] (image -> image or image -> text);
    results: images uint8 [k, S, S, 3] or k strings; scores: k numbers (cosines or logits), best first.
    """
    k = len(results)
    if len(scores) != k:
        raise ValueError(f"{k} results but {len(scores)} scores")
    scores = _numpy(scores).reshape(-1)
    ncols, nrows = min(k, per_row) + 1, max(1, math.ceil(k / per_row))
    fig, grid = plt.subplots(nrows, ncols, figsize=(2.3 * ncols, 2.8 * nrows), squeeze=False)
    axes = [grid[0, 0]] + [grid[j // per_row, 1 + j % per_row] for j in range(k)]  # query, then results
    for ax in grid.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        if not any(ax is used for used in axes):
            ax.axis("off")  # the cells under the query and after the last result stay empty

    def draw(ax, item):
        if isinstance(item, str):
            ax.text(0.5, 0.5, textwrap.fill(item, width), ha="center", va="center", wrap=True, fontsize=9,
                    transform=ax.transAxes)
        else:
            ax.imshow(_image(item), interpolation="nearest")

    draw(axes[0], query)
    axes[0].set_title("query", fontweight="bold")
    for spine in axes[0].spines.values():
        spine.set_color("tab:red")
        spine.set_linewidth(2)
    for j in range(k):
        draw(axes[j + 1], results[j])
        axes[j + 1].set_title(f"#{j + 1}  score {float(scores[j]):.3f}", fontsize=9)
    fig.suptitle(title or (f'Retrieval for "{textwrap.shorten(query, 50)}"' if isinstance(query, str)
                           else "Retrieval for the query image"))
    fig.tight_layout()
    return fig


def plot_accuracy_curve(xs, ys_dict: dict, chance: float | None = None, xlabel: str = "examples per class",
                        ylabel: str = "accuracy", title: str = "Accuracy", log_x: bool = False) -> plt.Figure:
    """Lines of ys against xs, one per entry of ys_dict, with an optional dashed chance line.

    ys_dict values: a list of len(xs) numbers; or of (mean, std) pairs (drawn with a shaded band, e.g.
    few_shot_curve's values); or a single number, drawn as a horizontal line (e.g. zero-shot accuracy).
    """
    xs = list(xs)
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, ys in ys_dict.items():
        if np.ndim(ys) == 0:
            ax.axhline(float(ys), linestyle="-.", color="tab:red" if "zero" in name.lower() else None, label=name)
            continue
        ys = np.asarray(ys, dtype=np.float64)
        if len(ys) != len(xs):
            raise ValueError(f"{name!r}: {len(ys)} values for {len(xs)} xs")
        if ys.ndim == 2:  # (mean, std) pairs
            line, = ax.plot(xs, ys[:, 0], "o-", label=name)
            ax.fill_between(xs, ys[:, 0] - ys[:, 1], ys[:, 0] + ys[:, 1], color=line.get_color(), alpha=0.2)
        else:
            ax.plot(xs, ys, "o-", label=name)
    if chance is not None:
        ax.axhline(chance, linestyle="--", color="gray", label="chance")
    if log_x:
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs)
        ax.set_xticklabels([str(x) for x in xs])
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_gender_associations(result: dict, title: str = "Gendered captions against the model's predictions"):
    """probes.gender_associations(...) as bars, per context: the share of images whose captions say "woman"
    next to the share the model calls "woman" (percent)."""
    contexts = sorted(result["contexts"], key=lambda c: result["contexts"][c]["data_woman_share"])
    x = np.arange(len(contexts))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.8 * len(contexts) + 2), 4.0))
    for offset, key, label in ((-0.2, "data_woman_share", "the captions say woman"),
                               (0.2, "model_woman_share", "the model says woman")):
        ax.bar(x + offset, [100 * result["contexts"][c][key] for c in contexts], 0.4, label=label)
    ax.axhline(100 * result["data_woman_share"], color="black", linestyle="--", linewidth=1,
               label="the captions, all contexts")
    ax.set_xticks(x, [f"{c}\n(n={result['contexts'][c]['n']})" for c in contexts], fontsize=8)
    ax.set(ylim=(0, 100), ylabel="images called woman (%)", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def bar_chart(values: dict, chance=None, title: str = "", ylabel: str = "accuracy (%)", ax=None, colors=None):
    """Bars of fractions {label: 0..1} drawn in percent, each value written on top; chance: one number or one per
    bar (a dashed line over each bar)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(max(5.5, 1.5 * len(values) + 1.5), 3.8))
    x = np.arange(len(values))
    bars = ax.bar(x, [100 * v for v in values.values()], color=colors)
    ax.bar_label(bars, fmt="%.0f%%", fontsize=8)
    if chance is not None:
        chance = np.broadcast_to(np.asarray(chance, dtype=float), (len(values),))
        ax.hlines(100 * chance, x - 0.42, x + 0.42, colors="black", linestyles="--", label="chance")
        ax.legend(loc="upper right", fontsize=8)
    ax.set_xticks(x, list(values), fontsize=8)
    ax.set(ylim=(0, 125), ylabel=ylabel, title=title)  # room above 100% for the labels and the legend
    ax.set_yticks(range(0, 101, 20))
    ax.figure.tight_layout()
    return ax.figure


def save_figure(fig: plt.Figure, path, dpi: int = 120):
    """Write fig to path atomically (PNG unless the suffix names another format: .pdf, .svg); returns the Path."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    with atomic_path(path) as tmp:  # the temporary file ends in .tmp, so the format is passed explicitly
        fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight")
    return path
