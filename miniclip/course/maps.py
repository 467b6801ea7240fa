"""What the image tower looks at, on its patch grid: attention maps and occlusion maps.

    weights = class_token_attention(model.visual, images)          # [B, layers, grid, grid]
    drop = occlusion_map(model.encode_image, images, text_feature)  # [B, grid, grid]: similarity lost per patch

Attention maps show where the class token (the token the image feature is read from) takes its values from, block
by block. They are a hint, not an explanation: what a token carries is already a mix of its neighbours after the
first block. Occlusion asks the model directly: grey out one patch, and see how much the image-caption similarity
drops. A patch the model ignores gives exactly zero.
"""
from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from miniclip.model import VisionTransformer


@torch.no_grad()
def class_token_attention(visual: VisionTransformer, images: torch.Tensor) -> torch.Tensor:
    """images [B, 3, H, W], normalised -> attention of the class token to each patch [B, layers, grid, grid],
    averaged over heads (each map sums to 1 minus what the class token gives itself).

    The tower's blocks run one by one, each through Attention(return_weights=True).
    """
    x = visual.embed(images)  # [B, 1 + grid*grid, width]
    grid = round((x.shape[1] - 1) ** 0.5)
    maps = []
    for block in visual.blocks:
        y, weights = block.attn(block.ln_1(x), return_weights=True)  # weights [B, heads, T, T]
        x = x + y
        x = x + block.mlp(block.ln_2(x))
        maps.append(weights[:, :, 0, 1:].mean(dim=1))  # [B, grid*grid]: the class token's row, patches only
    return torch.stack(maps, dim=1).view(len(x), len(maps), grid, grid)  # [B, layers, grid, grid]


@torch.no_grad()
def occlusion_map(encode_image, images: torch.Tensor, text_features: torch.Tensor, patch: int,
                  stride: int | None = None) -> torch.Tensor:
    """How much each patch matters for matching a caption: [B, rows, cols] cosine drops.

    encode_image: images [n, 3, H, W] -> features [n, D] (e.g. model.encode_image); images [B, 3, H, W],
    normalised; text_features [B, D] (one caption per image) or [D] (the same caption for all). Each patch x patch
    window (moved by stride, default patch) is set to 0, the mean grey after normalisation, and the cosine of the
    image with its caption is measured again: value = cosine(original) - cosine(occluded). Positive: the patch
    supported the caption; negative: it spoke against it; zero: the model did not use it.
    """
    stride = stride or patch
    B, _, H, W = images.shape
    if patch > min(H, W) or (H - patch) % stride or (W - patch) % stride:
        raise ValueError(f"occlusion_map: patch ({patch}) and stride ({stride}) must tile the {H}x{W} image; "
                         f"use the model's patch size, or a stride that divides {H - patch}")
    rows, cols = (H - patch) // stride + 1, (W - patch) // stride + 1
    text = F.normalize(text_features.float(), dim=-1).expand(B, -1)  # [B, D]
    before = (F.normalize(encode_image(images).float(), dim=-1) * text).sum(-1)  # [B]
    drops = torch.zeros(B, rows, cols)
    for r in range(rows):
        occluded = images.clone()[None].repeat(cols, 1, 1, 1, 1)  # [cols, B, 3, H, W]: one copy per window
        for c in range(cols):
            occluded[c, :, :, r * stride:r * stride + patch, c * stride:c * stride + patch] = 0.0
        features = F.normalize(encode_image(occluded.flatten(0, 1)).float(), dim=-1)  # [cols * B, D]
        after = (features.view(cols, B, -1) * text).sum(-1)  # [cols, B]
        drops[:, r, :] = (before - after).t().cpu()  # [B, cols]
    return drops


def upsample(grid_map: torch.Tensor, size: int) -> torch.Tensor:
    """A [rows, cols] map -> [size, size] with nearest-neighbour blocks, to lay over an image of that size."""
    return F.interpolate(grid_map[None, None].float(), size=(size, size), mode="nearest")[0, 0]


def plot_maps(images, rows: list[dict], title: str):
    """A figure of maps over images: one row per image, the image then each map laid over it.

    images: uint8 [R, S, S, 3]; rows: R dicts {"label": row title, "maps": {column title: [g, g] map}}; maps whose
    column title starts with "occlusion" share a diverging colour scale centred on 0 (red: the patch supported the
    caption), the others a sequential one. Returns the matplotlib Figure.
    """
    ncols = 1 + max(len(r["maps"]) for r in rows)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(3.0 * ncols, 3.2 * len(rows)), squeeze=False)
    limit = max(float(m.abs().max()) for r in rows for k, m in r["maps"].items() if k.startswith("occlusion"))
    size = images.shape[1]
    for i, row in enumerate(rows):
        axes[i, 0].imshow(images[i], interpolation="nearest")
        axes[i, 0].set_title(textwrap.fill(row["label"], 30), fontsize=8)
        for j, (name, grid_map) in enumerate(row["maps"].items(), start=1):
            ax = axes[i, j]
            ax.imshow(images[i], interpolation="nearest")
            occlusion = name.startswith("occlusion")
            shown = ax.imshow(upsample(grid_map, size), cmap="RdBu_r" if occlusion else "viridis", alpha=0.6,
                              vmin=-limit if occlusion else 0, vmax=limit if occlusion else None)
            ax.set_title(textwrap.fill(name, 30), fontsize=8)
            fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04).ax.tick_params(labelsize=7)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(title)
    fig.tight_layout()
    return fig
