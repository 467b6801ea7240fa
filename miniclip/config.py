"""Model configuration: one dataclass and a few named presets.

    cfg = CLIPConfig.preset("shapes-tiny")     # trains on a 2-core laptop CPU in about a minute
    cfg = CLIPConfig.preset("coco-small")      # one T4-class GPU, 64 px COCO
    cfg = CLIPConfig.preset("coco-base")       # one A100/H100-class GPU, 128 px COCO
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass


@dataclass
class CLIPConfig:
    # image tower: a small Vision Transformer
    image_size: int = 32  # pixels, square
    patch_size: int = 8  # pixels; the image becomes (image_size / patch_size)^2 tokens
    stem_channels: tuple[int, ...] = ()  # optional 3x3 stride-2 convolutions before the patches; () = plain CLIP
    vision_width: int = 64
    vision_layers: int = 2
    vision_heads: int = 4
    # text tower: a causal Transformer over BPE tokens
    context_length: int = 32  # tokens, including start and end
    vocab_size: int = 512
    eot_token_id: int = 3  # the end-of-text token; its position is where the text feature is read
    text_width: int = 64
    text_layers: int = 2
    text_heads: int = 4
    # shared
    embed_dim: int = 64  # the joint embedding space
    mlp_ratio: int = 4
    activation: str = "gelu"  # "gelu" or "quick_gelu" (what OpenAI's weights were trained with)
    init_logit_scale: float = math.log(1 / 0.07)  # the temperature, stored as ln(1 / T)
    max_logit_scale: float = math.log(100.0)  # the temperature is clamped so that 1 / T <= 100

    def __post_init__(self):
        self.stem_channels = tuple(self.stem_channels)
        if self.activation not in ("gelu", "quick_gelu"):
            raise ValueError(f"CLIPConfig.activation must be 'gelu' or 'quick_gelu', got {self.activation!r}")
        stride = 2 ** len(self.stem_channels)
        if self.image_size % self.patch_size or self.patch_size % stride:
            raise ValueError(
                f"CLIPConfig: image_size ({self.image_size}) must be a multiple of patch_size ({self.patch_size}), "
                f"and patch_size a multiple of the stem's stride ({stride})"
            )
        for name in ("vision", "text"):
            width, heads = getattr(self, f"{name}_width"), getattr(self, f"{name}_heads")
            if width % heads:
                raise ValueError(f"CLIPConfig.{name}_width ({width}) must be divisible by {name}_heads ({heads})")

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @classmethod
    def preset(cls, name: str, **overrides) -> "CLIPConfig":
        """The named configuration, with any field overridden by keyword."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["stem_channels"] = list(self.stem_channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "CLIPConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"CLIPConfig: unknown fields {unknown}; known fields are {sorted(known)}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


PRESETS: dict[str, dict] = {
    # 32 px captioned shapes, 0.27M parameters. The conv stem is what lets a tiny ViT learn *shape* (not just
    # colour) within a minute on a CPU; see REFERENCES.md, "a throwaway prototype of the shapes world".
    "shapes-tiny": dict(
        image_size=32, patch_size=8, stem_channels=(32, 64, 64), vision_width=64, vision_layers=2, vision_heads=4,
        context_length=32, vocab_size=512, text_width=64, text_layers=2, text_heads=4, embed_dim=64,
    ),
    # 64 px COCO on one T4-class GPU: plain CLIP patch embedding, 8x8 patches -> 64 image tokens.
    "coco-small": dict(
        image_size=64, patch_size=8, vision_width=256, vision_layers=6, vision_heads=4,
        context_length=48, vocab_size=8192, text_width=256, text_layers=4, text_heads=4, embed_dim=256,
    ),
    # 128 px COCO on one A100/H100-class GPU: 16x16 patches -> 64 image tokens, widths a GPU can fill.
    "coco-base": dict(
        image_size=128, patch_size=16, vision_width=512, vision_layers=8, vision_heads=8,
        context_length=48, vocab_size=16384, text_width=512, text_layers=8, text_heads=8, embed_dim=512,
    ),
}
