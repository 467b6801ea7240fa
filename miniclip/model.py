"""MiniCLIP: an image encoder and a text encoder that meet in one embedding space.

Read top to bottom: the Transformer block both towers share (attention, then an MLP), the image tower (a small
Vision Transformer), the text tower (a causal Transformer), and the CLIP model that compares the two with a
learned temperature. Each tower runs: embed -> blocks -> norm -> pick one token -> project. The layout follows
OpenAI's clip/model.py, and so do the parameter names, so that weights convert to and from
`transformers.CLIPModel` (miniclip/hf.py). The last section, "Speed", skips work whose result nobody reads.
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
        """x [...] -> [...], elementwise."""
        return x * torch.sigmoid(1.702 * x)


class Attention(nn.Module):
    """Multi-head self-attention: each token averages the values of the tokens it attends to (causal: 0..i only)."""

    def __init__(self, width: int, heads: int, causal: bool):
        super().__init__()
        self.heads, self.causal = heads, causal
        self.qkv = nn.Linear(width, 3 * width)  # queries, keys and values in one matrix multiply
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, return_weights: bool = False):
        """x [B, T, W] -> output [B, T, W]; with return_weights=True, (output, weights [B, heads, T, T])."""
        B, T, W = x.shape
        d = W // self.heads  # the width of one head
        q, k, v = self.qkv(x).chunk(3, dim=-1)  # 3 x [B, T, W]
        q, k, v = (t.view(B, T, self.heads, d).transpose(1, 2) for t in (q, k, v))  # 3 x [B, heads, T, d]
        if return_weights:  # written out: softmax(q k^T / sqrt(d) + mask) v
            scores = q @ k.transpose(-2, -1) / math.sqrt(d)  # [B, heads, T, T]: query i . key j
            if self.causal:  # token i never sees a later token j > i: score -inf, weight 0
                future = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)  # [T, T]: True where j > i
                scores = scores.masked_fill(future, float("-inf"))
            weights = scores.softmax(dim=-1)  # [B, heads, T, T], each row sums to 1
            y = weights @ v  # [B, heads, T, d]
        else:  # the same function in one fused kernel, which never stores the T x T weights
            y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)  # [B, heads, T, d]
        y = self.out(y.transpose(1, 2).reshape(B, T, W))  # [B, heads, T, d] -> [B, T, W]: heads side by side
        return (y, weights) if return_weights else y


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, T, W] -> [B, T, W]."""
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, 3, H, W] -> [B, channels[-1], H / 2^n, W / 2^n] for n convolutions."""
        return self.layers(x.contiguous(memory_format=torch.channels_last))  # same values, stored for speed (see Speed)


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

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, H, W], normalised -> features [B, embed_dim]."""
        if images.ndim != 4 or images.shape[1:] != (3, self.image_size, self.image_size):
            raise ValueError(
                f"expected images of shape [batch, 3, {self.image_size}, {self.image_size}], got {list(images.shape)}"
            )
        x = self.embed(images)  # [B, 1 + grid*grid, width]
        first = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)  # [B]: the class token, token 0
        x = read_token(self.blocks, x, first)  # [B, width]: the blocks' output at the class token
        return self.ln_post(x) @ self.proj  # [B, width] -> [B, embed_dim]

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, H, W] -> the tokens the blocks read [B, 1 + grid*grid, width]: class token, then patches."""
        x = self.stem(images) if self.stem is not None else images
        x = self.conv1(x)  # [B, width, grid, grid]
        x = x.flatten(2).transpose(1, 2)  # [B, grid*grid, width]: one token per patch
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)  # [B, 1, width]
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)  # [B, 1 + grid*grid, width]
        return self.ln_pre(x)


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

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, T], T <= context_length -> features [B, embed_dim]."""
        if tokens.ndim != 2 or tokens.shape[1] > self.context_length:
            raise ValueError(f"expected tokens of shape [batch, <= {self.context_length}] (the context length), "
                             f"got {list(tokens.shape)}")
        x = self.token_embedding(tokens) + self.positional_embedding[: tokens.shape[1]]  # [B, T, width]
        eot = (tokens == self.eot_token_id).int().argmax(dim=-1)  # [B]: the first end token of each row
        x = read_token(self.blocks, x, eot)  # [B, width]: the blocks' output at the end token
        return self.ln_final(x) @ self.proj  # [B, width] -> [B, embed_dim]


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
        """images [B_img, 3, H, W], tokens [B_txt, T] -> (logits_per_image [B_img, B_txt], its transpose)."""
        image_features = F.normalize(self.encode_image(images), dim=-1)  # [B_img, D], unit length
        text_features = F.normalize(self.encode_text(tokens), dim=-1)  # [B_txt, D], unit length
        logits_per_image = self.inverse_temperature() * image_features @ text_features.t()  # [B_img, B_txt]
        return logits_per_image, logits_per_image.t()

    def num_parameters(self) -> int:
        """The number of learned numbers (weights, embeddings and the temperature)."""
        return sum(p.numel() for p in self.parameters())


# ---------------------------------------------------------------------------------------------------------------
# Speed: what the model computes that nobody reads
#
# A tower reads one token of its last block: read_token(blocks, x, index) gives the numbers of `for block in
# blocks: x = block(x)` then `x[torch.arange(B), index]` with less work. The last block computes that token only
# (one query, one row of the MLP): about three quarters of its work. A causal (text) tower first drops the columns
# after the batch's last end token, as causal attention lets them reach no earlier token (shapes captions use
# about 10 of 32); not under torch.compile, where a shape that depends on the data recompiles for every batch.
# ConvStem stores its input channels-last (pixels channel-innermost), the layout oneDNN's and cuDNN's convolutions
# are fastest on: 1.13x faster shapes-tiny steps on a 2-core CPU (bench/train_step.py).


def read_token(blocks: nn.ModuleList, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x [B, T, W] through every block -> [B, W], the last block's output at token index[b] of each row b."""
    tracing = getattr(torch.compiler, "is_compiling", lambda: False)()  # torch.compile at work (torch >= 2.3)
    if blocks[0].attn.causal and not tracing:
        x = x[:, : int(index.max()) + 1]  # [B, T', W], T' <= T: nothing after the last index can reach it
    for block in blocks[:-1]:
        x = block(x)  # [B, T', W]
    return _block_at(blocks[-1], x, index)


def _block_at(block: Block, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """block(x)[torch.arange(B), index] -> [B, W]: Block.forward and Attention.forward for one query per row."""
    attn, (B, T, W) = block.attn, x.shape
    rows, d = torch.arange(B, device=x.device), W // attn.heads
    q, k, v = attn.qkv(block.ln_1(x)).chunk(3, dim=-1)  # 3 x [B, T, W]: every token is a key and a value
    q = q[rows, index].view(B, attn.heads, 1, d)  # [B, heads, 1, d]: the query of token index[b] only
    k, v = (t.view(B, T, attn.heads, d).transpose(1, 2) for t in (k, v))  # 2 x [B, heads, T, d]
    mask = None
    if attn.causal:  # token index[b] sees itself and the tokens before it
        mask = (torch.arange(T, device=x.device) <= index[:, None]).view(B, 1, 1, T)  # [B, 1, 1, T]
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # [B, heads, 1, d]
    x = x[rows, index] + attn.out(y.reshape(B, W))  # [B, heads, 1, d] -> [B, W]: heads side by side
    return x + block.mlp(block.ln_2(x))
