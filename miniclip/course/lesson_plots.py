"""Figures of lessons 3 and 5 that need more than a few lines of matplotlib.

    fig = plot_temperature_sweep(runs)                 # lesson 3: fixed temperatures against a learned one
    fig = plot_prompt_styles(top1, single, chance, seen)  # lesson 5: bare label, one template, ensemble

Every function takes numbers the notebook computed and returns a matplotlib Figure (title, labelled axes).
"""
from __future__ import annotations

from math import comb

import matplotlib.pyplot as plt
import matplotlib.ticker as ticker
import numpy as np


def plot_temperature_sweep(runs: dict, title: str = "Training at a fixed temperature, and with a learned one"):
    """runs: {label: {"T": final temperature, "fixed": bool, "i2t_r1": %, "t2i_r1": %, "steps": [int],
    "loss": [nats]}} -> a Figure: held-out R@1 against T (log axis) on the left, training loss curves on the right.

    The fixed runs are points joined by a line; a learned run is a star at the temperature it ended at.
    """
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [5, 6]})
    fixed = sorted((r["T"], r) for r in runs.values() if r["fixed"])
    temps = [t for t, _ in fixed]
    for key, name, colour in (("i2t_r1", "image -> text", "tab:blue"), ("t2i_r1", "text -> image", "tab:orange")):
        ax1.plot(temps, [r[key] for _, r in fixed], "o-", color=colour, label=f"fixed T, {name}")
        for label, r in runs.items():
            if not r["fixed"]:
                ax1.plot([r["T"]], [r[key]], "*", markersize=15, color=colour, markeredgecolor="black",
                         label=f"{label} (ends at T = {r['T']:.3g}), {name}")
    ax1.axvline(0.01, color="tab:red", linestyle="--", linewidth=1)
    ax1.text(0.0105, 2, "CLIP's clamp\nT = 0.01", color="tab:red", fontsize=8, va="bottom")
    ax1.set_xscale("log")
    ax1.set_xticks(temps, [f"{t:g}" for t in temps])
    ax1.invert_xaxis()  # warm on the left, cold on the right
    ax1.set(xlabel="temperature T (log scale; colder to the right)", ylabel="held-out recall@1 (%)", ylim=(0, None),
            title="Held-out recall@1 after training")
    ax1.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
    cmap = plt.get_cmap("coolwarm_r")
    for i, (label, r) in enumerate(sorted(runs.items(), key=lambda kv: -kv[1]["T"])):
        colour = "black" if not r["fixed"] else cmap(i / max(1, len(runs) - 1))
        ax2.plot(r["steps"], r["loss"], color=colour, linewidth=2 if not r["fixed"] else 1.3, label=label)
    ax2.set(xlabel="training step", ylabel="training loss (nats, log scale)", yscale="log",
            title="Training loss of each run")
    ax2.yaxis.set_major_formatter(ticker.ScalarFormatter())
    ax2.yaxis.set_minor_formatter(ticker.NullFormatter())
    ax2.set_yticks([1, 2, 5, 10, 20, 50])
    ax2.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_prompt_styles(top1: dict, single: dict, chance: float, seen: set, ensemble_label: str = "ensemble",
                       title: str = "Three prompt styles", paired: list | None = None):
    """top1: {style: accuracy 0..1} for bare label / one template / ensemble; single: {template: accuracy} of each
    template alone; seen: the templates that are phrasings of the training captions; paired: optional
    [(i, j, only_i, only_j, p)] (paired_counts of styles i and j, by position), drawn as brackets over the bars
    -> a Figure of two panels."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [3, 4]})
    heights = [100 * v for v in top1.values()]
    bars = ax1.bar(list(top1), heights, color=["tab:gray", "tab:blue", "tab:green"])
    ax1.bar_label(bars, fmt="%.1f%%")
    for level, (i, j, only_i, only_j, p) in enumerate(paired or []):
        y = max(heights) + 8 + 9 * level  # above the bars and their labels, one row per pair
        ax1.plot([i, i, j, j], [y - 2, y, y, y - 2], color="black", linewidth=1)
        ax1.text((i + j) / 2, y + 0.8, f"{only_i} vs {only_j} images, p = {p:.1g}", ha="center", fontsize=8)
    ax1.axhline(100 * chance, linestyle="--", color="black", linewidth=1)
    ax1.text(len(top1) - 0.55, 100 * chance + 1.5, f"chance {100 * chance:.1f}%", ha="right", va="bottom", fontsize=8)
    ax1.set(ylabel="top-1 accuracy (%)", ylim=(0, max(105, max(heights) + 14 + 9 * len(paired or []))), title=title)
    order = sorted(single, key=single.get)
    bars = ax2.barh(range(len(order)), [100 * single[t] for t in order],
                    color=["tab:blue" if t in seen else "tab:orange" for t in order])
    ax2.bar_label(bars, fmt="%.1f%%", fontsize=8)
    ax2.axvline(100 * list(top1.values())[-1], color="tab:green", linestyle="-.", label=ensemble_label)
    ax2.axvline(100 * chance, linestyle="--", color="black", linewidth=1, label=f"chance ({100 * chance:.1f}%)")
    ax2.set_yticks(range(len(order)), [f'"{t}"' for t in order], fontsize=8)
    ax2.set(xlabel="top-1 accuracy (%)", xlim=(0, 112),
            title="Each template alone (blue: a phrasing of the captions; orange: not)")
    ax2.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    return fig


def paired_counts(right_a: np.ndarray, right_b: np.ndarray) -> tuple[int, int, float]:
    """Two bool [N] arrays (image right under A, under B) -> (only A right, only B right, two-sided p-value of
    McNemar's exact test: the sign test on the images where A and B disagree)."""
    only_a, only_b = int((right_a & ~right_b).sum()), int((right_b & ~right_a).sum())
    n = only_a + only_b
    p = min(1.0, 2 * sum(comb(n, i) for i in range(min(only_a, only_b) + 1)) / 2**n) if n else 1.0
    return only_a, only_b, p
