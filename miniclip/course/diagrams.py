"""Figures of lessons 1-4 that take the model apart: patches, parameters, attention, the <end> token, the loss.

Each returns a matplotlib Figure and calls no plt.show(); assign it, `fig = plot_patch_grid(...)`, to see it once
in a notebook. The general plots (pairs, similarity, history, confusion, ...) are in miniclip.course.figures.
"""
from __future__ import annotations

import matplotlib.patheffects as pe
import matplotlib.pyplot as plt
import numpy as np


def token_pieces(tokenizer, text: str) -> list[str]:
    """The pieces of a text as the row the model reads: <start>, BPE pieces ('Ġ' shown as '_'), <end>, padding."""
    names = {"<|startoftext|>": "<start>", "<|endoftext|>": "<end>", "<|pad|>": "<pad>"}
    return [names.get(p, p.replace("Ġ", "_")) for p in tokenizer.tokenize(text)]


def plot_patch_grid(image, patch_size: int, title: str | None = None) -> plt.Figure:
    """An image uint8 [S, S, 3] cut into patch_size x patch_size patches (pixels), numbered in sequence order, and
    the token sequence it becomes: [class token, patch 1, patch 2, ...] (9 tokens a row, 13 for long sequences)."""
    image = np.asarray(image)
    s = image.shape[0]
    g = s // patch_size
    n_tokens = g * g + 1
    per_row = min(n_tokens, 9 if n_tokens <= 18 else 13)
    rows = -(-n_tokens // per_row)
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4.4), gridspec_kw=dict(width_ratios=[1, 1.5]))
    ax0.imshow(image, interpolation="nearest")
    for k in range(1, g):
        ax0.axhline(k * patch_size - 0.5, color="white", lw=1.2)
        ax0.axvline(k * patch_size - 0.5, color="white", lw=1.2)
    outline = [pe.withStroke(linewidth=2, foreground="black")]
    for r in range(g):
        for c in range(g):
            ax0.text(c * patch_size + 1, r * patch_size + 1, str(1 + r * g + c), color="white", fontsize=8 if g <= 4 else 6,
                     ha="left", va="top", path_effects=outline)
    ax0.set(title=f"{s} x {s} px, cut into {g} x {g} patches of {patch_size} x {patch_size} px", xticks=[], yticks=[])
    gap = 0.25
    for t in range(n_tokens):
        r, c = divmod(t, per_row)
        x0, y0 = c * (1 + gap), r * (1 + gap + 0.35)
        if t == 0:
            ax1.add_patch(plt.Rectangle((x0, y0), 1, 1, color="tab:red", alpha=0.85))
            ax1.text(x0 + 0.5, y0 + 0.5, "CLS", color="white", ha="center", va="center", fontsize=7, fontweight="bold")
        else:
            pr, pc = divmod(t - 1, g)
            tile = image[pr * patch_size:(pr + 1) * patch_size, pc * patch_size:(pc + 1) * patch_size]
            ax1.imshow(tile, extent=(x0, x0 + 1, y0 + 1, y0), interpolation="nearest")
        ax1.text(x0 + 0.5, y0 + 1.05, str(t), ha="center", va="top", fontsize=8)
    ax1.set_xlim(-0.2, per_row * (1 + gap))
    ax1.set_ylim(rows * (1 + gap + 0.35), -0.2)
    ax1.set_aspect("equal")
    ax1.axis("off")
    ax1.set_title(f"... becomes a sequence of {n_tokens} tokens:\nthe class token (0), then the {g * g} patches in order")
    fig.suptitle(title or "Patches become tokens")
    fig.tight_layout()
    return fig


def parameter_counts(model) -> dict[str, int]:
    """Parameter counts of a MiniCLIP by part, in model order: 'image: block 0', 'text: token embedding', ..."""
    names = {"visual": "image", "text": "text"}
    pretty = {"stem": "conv stem", "conv1": "patch embedding", "class_embedding": "class token",
              "positional_embedding": "positions", "ln_pre": "ln_pre", "ln_post": "ln_post", "proj": "projection",
              "token_embedding": "token embedding", "ln_final": "ln_final", "logit_scale": "temperature"}
    groups: dict[str, int] = {}
    for name, p in model.named_parameters():
        parts = name.split(".")
        if parts[0] in names:
            tower, what = names[parts[0]], parts[1]
            label = f"{tower}: block {parts[2]}" if what == "blocks" else f"{tower}: {pretty.get(what, what)}"
        else:
            label = pretty.get(parts[0], parts[0])
        groups[label] = groups.get(label, 0) + p.numel()
    order = ["conv stem", "patch embedding", "class token", "token embedding", "positions", "ln_pre", "block",
             "ln_post", "ln_final", "projection"]

    def rank(label):  # forward order: image encoder, text encoder, then the temperature
        tower, _, what = label.partition(": ")
        if not what:
            return (2, 0, 0)
        kind = next(i for i, o in enumerate(order + [what]) if what.startswith(o))
        number = int(what.split()[-1]) if what.startswith("block") else 0
        return (0 if tower == "image" else 1, kind, number)

    return dict(sorted(groups.items(), key=lambda kv: rank(kv[0])))


def plot_parameter_counts(model, title: str = "Where the parameters are") -> plt.Figure:
    """Horizontal bars of parameter_counts(model), image tower in blue, text tower in green."""
    groups = parameter_counts(model)
    labels, counts = list(groups), list(groups.values())
    colours = ["tab:blue" if k.startswith("image") else "tab:green" if k.startswith("text") else "tab:orange"
               for k in labels]
    fig, ax = plt.subplots(figsize=(7, 0.8 + 0.28 * len(labels)))
    ax.barh(range(len(labels)), counts, color=colours)
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    top = max(counts)
    for y, n in enumerate(counts):
        ax.text(n + 0.01 * top, y, f"{n:,}", va="center", fontsize=7)
    ax.set_xlim(0, top * 1.18)
    ax.set(xlabel="parameters", title=f"{title} ({model.num_parameters():,} in all)")
    fig.tight_layout()
    return fig


def plot_causal_attention(weights, labels: list[str],
                          title: str = "Causal self-attention in the text tower") -> plt.Figure:
    """Two panels for one caption of T tokens (labels): the causal mask (who may look at whom) and weights [T, T]."""
    w = np.asarray(weights.detach().float().cpu() if hasattr(weights, "detach") else weights)
    T = len(labels)
    mask = np.tril(np.ones((T, T)))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
    for ax, data, name, cmap in ((axes[0], mask, "the causal mask: 1 = may attend", "Greys"),
                                 (axes[1], w, "attention weights (head average)", "viridis")):
        im = ax.imshow(data, cmap=cmap, vmin=0, vmax=1 if data is mask else None)
        ax.set_xticks(range(T))
        ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(T))
        ax.set_yticklabels(labels, fontsize=8)
        ax.set(xlabel="key: the token looked at", ylabel="query: the token looking", title=name)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_end_token(tokenizer, captions: list[str], title: str = "Where the text feature is read: at the <end> token "
                   "of each caption (red)") -> plt.Figure:
    """Each caption as its row of tokens; the <end> token, whose output becomes the text feature, in red."""
    rows = [token_pieces(tokenizer, c) for c in captions]
    width = min(len(rows[0]), max(r.index("<end>") for r in rows) + 3)  # a couple of pads after the longest
    kind_colour = {"<start>": "#bbbbbb", "<end>": "tab:red", "<pad>": "#eeeeee"}
    fig, ax = plt.subplots(figsize=(1.0 + 0.78 * width, 0.9 + 0.55 * len(rows)))
    for i, row in enumerate(rows):
        for j, piece in enumerate(row[:width]):
            colour = kind_colour.get(piece, "#9ecae1")
            ax.add_patch(plt.Rectangle((j + 0.04, i + 0.08), 0.92, 0.84, color=colour))
            is_end = piece == "<end>"
            ax.text(j + 0.5, i + 0.5, "<end>\nfeature" if is_end else piece, ha="center", va="center", fontsize=7,
                    color="white" if is_end else "black", fontweight="bold" if is_end else "normal")
    ax.set_xlim(0, width)
    ax.set_ylim(len(rows), 0)
    ax.set_xticks([j + 0.5 for j in range(width)])
    ax.set_xticklabels(range(width), fontsize=7)
    ax.set_yticks([])
    ax.set_xlabel("position in the context")
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_rows_and_columns(logits, captions: list[str],
                          title: str = "Two classification problems in one matrix") -> plt.Figure:
    """softmax over each row (image -> text) and over each column (text -> image) of logits [N, N], side by side."""
    logits = logits.detach().float().cpu()
    n = logits.shape[0]
    panels = ((logits.softmax(dim=1), "image -> text: softmax over each row"),
              (logits.softmax(dim=0), "text -> image: softmax over each column"))
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2))
    short = [c if len(c) <= 28 else c[:26] + "..." for c in captions]
    for ax, (p, name) in zip(axes, panels):
        im = ax.imshow(p.numpy(), cmap="magma", vmin=0, vmax=1)
        for i in range(n):
            ax.add_patch(plt.Rectangle((i - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="tab:cyan", lw=1.5))
        if n <= 10:
            for i in range(n):
                for j in range(n):
                    ax.text(j, i, f"{p[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="black" if p[i, j] > 0.5 else "white")
        ax.set_xticks(range(n))
        ax.set_xticklabels(short, rotation=45, ha="right", rotation_mode="anchor", fontsize=7)
        ax.set_yticks(range(n))
        ax.set_yticklabels([f"image {i}" for i in range(n)], fontsize=7)
        ax.set(xlabel="captions", ylabel="images", title=name)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="probability")
    fig.suptitle(f"{title} (targets: the diagonal, outlined)")
    fig.tight_layout()
    return fig


def plot_softmax_bars(cosines, captions: list[str], temperatures, target: int = 0,
                      title: str = "One image's softmax over the captions") -> plt.Figure:
    """softmax(cosines / T) of one image's cosines [K] as bars, one panel per temperature T (a number or a list);
    the true caption (index target) in red."""
    cos = cosines.detach().float().cpu()
    temperatures = list(np.atleast_1d(temperatures))
    n = len(temperatures)
    fig, axes = plt.subplots(1, n, figsize=(0.6 + 3.6 * n, 3.6), squeeze=False, sharey=True)
    short = [c if len(c) <= 24 else c[:22] + "..." for c in captions]
    colours = ["tab:red" if j == target else "tab:blue" for j in range(len(captions))]
    for ax, T in zip(axes[0], temperatures):
        p = (cos / float(T)).softmax(-1).numpy()
        ax.bar(range(len(p)), p, color=colours)
        ax.set_xticks(range(len(p)))
        ax.set_xticklabels(short, rotation=55, ha="right", rotation_mode="anchor", fontsize=7)
        ax.set_ylim(0, 1.05)
        ax.axhline(1 / len(p), color="gray", ls=":", lw=1)
        ax.set_title(f"T = {float(T):.3g}  (1/T = {1 / float(T):.3g})", fontsize=10)
        ax.set_xlabel("captions (true one in red)")
    axes[0][0].set_ylabel("probability")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
