"""Configuration: what a model is (CLIPConfig) and how a run trains it (TrainConfig), with named presets.

    cfg = CLIPConfig.preset("shapes-tiny")     # trains on a 2-core laptop CPU in about a minute
    cfg = CLIPConfig.preset("coco-small")      # one T4-class GPU, 64 px COCO
    cfg = CLIPConfig.preset("coco-base")       # one A100/H100-class GPU, 128 px COCO
    run = TrainConfig.for_preset("shapes-tiny", steps=300)   # the recipe that goes with a model preset
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field


@dataclass
class CLIPConfig:
    """The shape of a MiniCLIP: both towers' sizes, the joint embedding and the temperature's start and limit."""

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
        """Image tokens besides the class token: (image_size / patch_size)^2."""
        return (self.image_size // self.patch_size) ** 2

    @classmethod
    def preset(cls, name: str, **overrides) -> "CLIPConfig":
        """The named configuration, with any field overridden by keyword."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    def to_dict(self) -> dict:
        """The fields as plain JSON values (what config.json holds)."""
        d = dataclasses.asdict(self)
        d["stem_channels"] = list(self.stem_channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "CLIPConfig":
        """The inverse of to_dict; an unknown field is a ValueError that lists the known ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"CLIPConfig: unknown fields {unknown}; known fields are {sorted(known)}")
        return cls(**d)

    def to_json(self) -> str:
        """to_dict() as indented JSON text."""
        return json.dumps(self.to_dict(), indent=2)


PRESETS: dict[str, dict] = {
    # 32 px captioned shapes, 0.30M parameters (304,897 with a 512-token vocabulary). The conv stem is what lets a
    # tiny ViT learn *shape* (not just colour) within a minute on a CPU; see TrainConfig.text_lr_scale.
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


@dataclass
class TrainConfig:
    """Everything that defines a run; `TrainConfig.for_preset(name)` fills in what suits a model preset."""

    preset: str = "shapes-tiny"
    data: str = "shapes"  # "shapes" (generated, offline) or a cache directory from `miniclip prepare`
    steps: int = 1000
    batch_size: int = 256  # pairs per step, over all GPUs together
    lr: float = 4e-3
    # The text tower learns at this fraction of lr. On the shapes world colour is learned in ~150 steps and
    # shape is the bottleneck: with one learning rate both towers first drop shape ("red circle" and "red star"
    # reached cosine 0.97) and no recipe reached 90% zero-shot within 300 s on 2 cores; with the conv stem and
    # a 0.1x text rate, 90% came at steps 650-700 (measured while the shapes world was designed).
    text_lr_scale: float = 0.1
    weight_decay: float = 0.1  # on matrices only
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    warmup_steps: int = 100
    grad_clip: float = 1.0
    seed: int = 0
    log_every: int = 10
    eval_every: int = 250  # 0: only at the end
    # What each evaluation scores (evaluate_suite): held-out images, and zero-shot images per class (shapes
    # world; 0: none). Part of the recipe, so that a run is never reused for a curve measured another way.
    eval_images: int = 1000
    eval_per_class: int = 20
    checkpoint_every: int = 500  # 0: only at the end
    hard_negatives: bool = False  # add each relation caption's argument-swapped twin as a negative (NegCLIP)
    augment: bool = False  # random resized crops (never flips)
    compile: bool = False  # torch.compile the model (GPU)
    init_from: str = ""  # a run folder whose weights and tokenizer the run starts from (fine-tuning, as NegCLIP does)
    device: str = "auto"
    num_images: int = 50_000  # training images: how many the shapes world draws, or a cache's first N (0: all)
    # shapes world only
    word_fraction: float = 0.0  # share of training images with a word written on them
    shapes_options: dict = field(default_factory=dict)  # other knobs of miniclip.data.shapes.generate
    model_overrides: dict = field(default_factory=dict)  # fields of CLIPConfig to change from the preset

    def __post_init__(self):
        self.betas = tuple(self.betas)
        for name in ("steps", "batch_size", "eval_images"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} (--{name.replace('_', '-')}) must be a positive whole number, "
                                 f"got {getattr(self, name)!r}")
        for name in ("num_images", "warmup_steps", "log_every", "eval_every", "checkpoint_every", "eval_per_class"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ValueError(f"TrainConfig.{name} (--{name.replace('_', '-')}) must be 0 or more, "
                                 f"got {getattr(self, name)!r}")
        if not 0 <= self.word_fraction <= 1:
            raise ValueError(f"TrainConfig.word_fraction (--word-fraction) must be a share between 0 and 1, "
                             f"got {self.word_fraction!r}")
        if self.data != "shapes" and (self.word_fraction or self.shapes_options):
            raise ValueError(f"--word-fraction and shapes_options change the shapes world, not a cache (--data "
                             f"{self.data}): build the cache with them (`miniclip prepare shapes --word-fraction ...`)")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"TrainConfig.lr (--lr) must be a finite positive number, got {self.lr!r}")
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r} (--preset); known presets: {', '.join(PRESETS)}")

    @classmethod
    def for_preset(cls, name: str, **overrides) -> "TrainConfig":
        """The training recipe that goes with a model preset, with any field overridden."""
        return cls(**{**dict(preset=name), **TRAIN_PRESETS.get(name, {}), **overrides})

    def world_options(self) -> dict:
        """The shapes world's knobs of this run (word_fraction and shapes_options), {} for a cache."""
        return dict(word_fraction=self.word_fraction, **self.shapes_options) if self.data == "shapes" else {}

    def model_config(self) -> CLIPConfig:
        """The CLIPConfig this run trains: the preset's, with model_overrides applied."""
        return CLIPConfig.preset(self.preset, **self.model_overrides)


TRAIN_PRESETS = {
    "shapes-tiny": dict(steps=1000, batch_size=256, lr=4e-3, warmup_steps=100, text_lr_scale=0.1),
    "coco-small": dict(steps=20_000, batch_size=256, lr=1e-3, warmup_steps=1000, text_lr_scale=1.0, augment=True,
                       eval_every=2000, checkpoint_every=2000, num_images=0),
    "coco-base": dict(steps=30_000, batch_size=512, lr=5e-4, warmup_steps=2000, text_lr_scale=1.0, augment=True,
                      eval_every=2000, checkpoint_every=2000, compile=True, num_images=0),
}
