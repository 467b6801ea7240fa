"""MiniCLIP: an image encoder and a text encoder that meet in one embedding space.

Read top to bottom: the Transformer block both towers share, the image tower (a small Vision Transformer),
the text tower (a causal Transformer), and the CLIP model that compares the two with a learned temperature.
The layout follows OpenAI's clip/model.py; the names of the parameters follow it too, so that weights convert
to and from `transformers.CLIPModel` (see miniclip/hf.py).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from miniclip.config import CLIPConfig


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x): the GELU approximation OpenAI's CLIP weights were trained with."""

    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class Attention(nn.Module):
    """Multi-head self-attention through F.scaled_dot_product_attention (fused kernels where available)."""

    def __init__(self, width: int, heads: int, causal: bool):
        super().__init__()
        self.heads, self.causal = heads, causal
        self.qkv = nn.Linear(width, 3 * width)  # queries, keys and values in one matrix multiply
        self.out = nn.Linear(width, width)

    def forward(self, x, keep=None):  # x: [batch, tokens, width]; keep: None, or one token index per row [batch]
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)  # 3 x [B, heads, T, C/heads]
        mask = None
        if keep is not None:  # only token keep[b] of each row asks: one query per row
            q = q[torch.arange(B, device=x.device), :, keep].unsqueeze(2)  # [B, heads, 1, C/heads]
            if self.causal:  # it sees itself and the tokens before it
                mask = (torch.arange(T, device=x.device) <= keep[:, None]).view(B, 1, 1, T)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=self.causal and keep is None)
        return self.out(y.transpose(1, 2).reshape(B, -1, C))  # [B, heads, T or 1, C/heads] -> [B, T or 1, C]


class Block(nn.Module):
    """A pre-LayerNorm Transformer block: x + attention(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, width: int, heads: int, mlp_ratio: int, activation: str, causal: bool = False):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads, causal)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, mlp_ratio * width),
            QuickGELU() if activation == "quick_gelu" else nn.GELU(),
            nn.Linear(mlp_ratio * width, width),
        )

    def forward(self, x, keep=None):
        """x [B, T, W] -> [B, T, W]; with keep (a token index per row, [B]) only those tokens: [B, 1, W]."""
        y = self.attn(self.ln_1(x), keep)
        if keep is not None:
            x = x[torch.arange(x.shape[0], device=x.device), keep].unsqueeze(1)  # [B, 1, W]
        x = x + y
        return x + self.mlp(self.ln_2(x))


def read_token(blocks: nn.ModuleList, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Run x [B, T, W] through the blocks -> [B, W], the output at token index[b] of each row.

    Nothing else of the last block's output is read, so the last block computes only that token: the same
    feature, with about three quarters of the last block's work (its MLP, and its attention for other queries) skipped.
    """
    for block in blocks[:-1]:
        x = block(x)
    return blocks[-1](x, keep=index)[:, 0]  # [B, 1, W] -> [B, W]


def _compiling() -> bool:
    """True while torch.compile traces the model (shape-dependent shortcuts would make it recompile)."""
    is_compiling = getattr(torch.compiler, "is_compiling", None)  # torch >= 2.3
    return bool(is_compiling and is_compiling())


class ConvStem(nn.Module):
    """A few 3x3 stride-2 convolutions: cheap local features (edges, corners) before the patch embedding.

    Not in CLIP: on tiny 32 px images it lets a small ViT learn *shape* in a minute on a CPU (see config.py).
    """

    def __init__(self, channels: tuple[int, ...]):
        super().__init__()
        layers, c_in = [], 3
        for c_out in channels:
            layers += [nn.Conv2d(c_in, c_out, kernel_size=3, stride=2, padding=1), nn.GELU()]
            c_in = c_out
        self.layers = nn.Sequential(*layers)

    def forward(self, x):  # [B, 3, H, W] -> [B, channels[-1], H / 2^n, W / 2^n]
        # channels-last memory (the same tensor, pixels stored channel-innermost) is what oneDNN's and cuDNN's
        # convolutions are fastest on: 1.13x faster shapes-tiny steps on a 2-core CPU (bench/train_step.py)
        return self.layers(x.contiguous(memory_format=torch.channels_last))


class VisionTransformer(nn.Module):
    """Image [B, 3, H, W] -> feature [B, embed_dim]: patches become tokens, the class token sums them up."""

    def __init__(self, cfg: CLIPConfig):
        super().__init__()
        self.image_size, width = cfg.image_size, cfg.vision_width
        self.stem = ConvStem(cfg.stem_channels) if cfg.stem_channels else None
        stem_stride = 2 ** len(cfg.stem_channels)
        in_channels = cfg.stem_channels[-1] if cfg.stem_channels else 3
        k = cfg.patch_size // stem_stride  # the patch size in the stem's (downsampled) pixels
        # A convolution with kernel = stride = patch size is a linear map applied to every patch.
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=k, stride=k, bias=False)
        scale = width**-0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(cfg.num_patches + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.blocks = nn.ModuleList(
            Block(width, cfg.vision_heads, cfg.mlp_ratio, cfg.activation) for _ in range(cfg.vision_layers)
        )
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, cfg.embed_dim))

    def forward(self, images):
        if images.ndim != 4 or images.shape[1:] != (3, self.image_size, self.image_size):
            raise ValueError(
                f"expected images of shape [batch, 3, {self.image_size}, {self.image_size}], got {list(images.shape)}"
            )
        x = self.stem(images) if self.stem is not None else images
        x = self.conv1(x)  # [B, width, grid, grid]
        x = x.flatten(2).transpose(1, 2)  # [B, grid*grid, width]: one token per patch
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)  # [B, 1, width]
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)  # [B, 1 + grid*grid, width]
        x = self.ln_pre(x)
        first = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)  # [B]: the class token is token 0 of each row
        return self.ln_post(read_token(self.blocks, x, first)) @ self.proj  # [B, width] -> [B, embed_dim]


class TextTransformer(nn.Module):
    """Tokens [B, T] -> feature [B, embed_dim], read at the end-of-text token.

    The mask is causal, so the end token is the first position that has seen the whole caption. It is found by
    its position (the first `eot_token_id` in each row), which works for any tokenizer; OpenAI's code takes the
    argmax over ids, which works only because its end token has the highest id.
    """

    def __init__(self, cfg: CLIPConfig):
        super().__init__()
        self.context_length, self.eot_token_id, width = cfg.context_length, cfg.eot_token_id, cfg.text_width
        self.token_embedding = nn.Embedding(cfg.vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.empty(cfg.context_length, width))
        self.blocks = nn.ModuleList(
            Block(width, cfg.text_heads, cfg.mlp_ratio, cfg.activation, causal=True) for _ in range(cfg.text_layers)
        )
        self.ln_final = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.empty(width, cfg.embed_dim))

    def forward(self, tokens):
        if tokens.ndim != 2 or tokens.shape[1] > self.context_length:
            raise ValueError(
                f"expected tokens of shape [batch, <= {self.context_length}] (the context length), got {list(tokens.shape)}"
            )
        eot = (tokens == self.eot_token_id).int().argmax(dim=-1)  # [B]: the first end token of each row
        if not _compiling():
            # Attention is causal, so nothing after a row's end token can change its feature: drop the padding
            # columns past the batch's last end token. Same features, less work (shapes captions use ~10 of 32).
            tokens = tokens[:, : int(eot.max()) + 1]  # [B, T'], T' <= T
        T = tokens.shape[1]
        x = self.token_embedding(tokens) + self.positional_embedding[:T]  # [B, T', width]
        return self.ln_final(read_token(self.blocks, x, eot)) @ self.proj  # [B, width] -> [B, embed_dim]


class MiniCLIP(nn.Module):
    """CLIP: two encoders, a shared embedding space, and a learned temperature.

    encode_image(images [B, 3, H, W]) -> [B, D];  encode_text(tokens [B, T]) -> [B, D]   (not normalised)
    forward(images, tokens) -> (logits_per_image [B_img, B_txt], logits_per_text [B_txt, B_img])
    """

    def __init__(self, config: CLIPConfig):
        super().__init__()
        self.config = config
        self.visual = VisionTransformer(config)
        self.text = TextTransformer(config)
        # The temperature T is learned as ln(1 / T): a log keeps it positive and makes its steps multiplicative.
        self.logit_scale = nn.Parameter(torch.tensor(float(config.init_logit_scale)))
        self.init_weights()

    @torch.no_grad()
    def init_weights(self):
        """The initialisation of OpenAI's reference code (std given per parameter)."""
        cfg = self.config
        nn.init.normal_(self.text.token_embedding.weight, std=0.02)
        nn.init.normal_(self.text.positional_embedding, std=0.01)
        for tower, width, layers in ((self.visual, cfg.vision_width, cfg.vision_layers),
                                     (self.text, cfg.text_width, cfg.text_layers)):
            proj_std = width**-0.5 * (2 * layers) ** -0.5
            for block in tower.blocks:
                nn.init.normal_(block.attn.qkv.weight, std=width**-0.5)
                nn.init.normal_(block.attn.out.weight, std=proj_std)
                nn.init.normal_(block.mlp[0].weight, std=(2 * width) ** -0.5)
                nn.init.normal_(block.mlp[2].weight, std=proj_std)
                for linear in (block.attn.qkv, block.attn.out, block.mlp[0], block.mlp[2]):
                    nn.init.zeros_(linear.bias)
        nn.init.normal_(self.text.proj, std=cfg.text_width**-0.5)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, H, W], normalised -> features [B, embed_dim] (not normalised)."""
        return self.visual(images)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, T] (from miniclip.Tokenizer) -> features [B, embed_dim] (not normalised)."""
        return self.text(tokens)

    def inverse_temperature(self) -> torch.Tensor:
        """The multiplier of the cosine similarities, 1 / temperature, never above exp(max_logit_scale) = 100."""
        return self.logit_scale.clamp(0, self.config.max_logit_scale).exp()

    @torch.no_grad()
    def clamp_logit_scale(self):
        """Keep the stored ln(1 / T) in [0, ln 100]; the training loop calls this after every optimiser step."""
        self.logit_scale.clamp_(0, self.config.max_logit_scale)

    def forward(self, images: torch.Tensor, tokens: torch.Tensor):
        image_features = F.normalize(self.encode_image(images), dim=-1)  # [B_img, D], unit length
        text_features = F.normalize(self.encode_text(tokens), dim=-1)  # [B_txt, D], unit length
        logits_per_image = self.inverse_temperature() * image_features @ text_features.t()  # [B_img, B_txt]: scaled cosines
        return logits_per_image, logits_per_image.t()

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

