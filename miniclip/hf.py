"""Convert between MiniCLIP and Hugging Face `transformers.CLIPModel`, in both directions.

    to_transformers(model, tokenizer, "export/")   # then CLIPModel.from_pretrained("export/"), or
                                                    # pipeline("zero-shot-image-classification", model="export/")
    model, tok = from_transformers("openai/clip-vit-base-patch32")    # OpenAI's weights, as a MiniCLIP
    pixels = tok.image_transform(pil_images)        # [B, 3, 224, 224], resized and normalised as CLIP expects
    logits_per_image, _ = model(pixels, tok.encode(["a photo of a cat.", "a photo of a dog."]))

Both compute the same function; only the names and the layout of the tensors differ:

    miniclip                               transformers
    visual.conv1                           vision_model.embeddings.patch_embedding
    visual.positional_embedding [P+1, W]   vision_model.embeddings.position_embedding.weight (an nn.Embedding)
    visual.ln_pre, visual.ln_post          vision_model.pre_layrnorm (sic), vision_model.post_layernorm
    *.blocks.i.attn.qkv [3W, W]            *.encoder.layers.i.self_attn.{q,k,v}_proj  3 x [W, W], rows q, k, v
    *.blocks.i.attn.out, mlp.0, mlp.2      *.encoder.layers.i.self_attn.out_proj, mlp.fc1, mlp.fc2
    *.blocks.i.ln_1, ln_2                  *.encoder.layers.i.layer_norm1, layer_norm2
    text.ln_final                          text_model.final_layer_norm
    visual.proj, text.proj [W, D]          visual_projection.weight, text_projection.weight [D, W] (transposed)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import transformers
from PIL import Image
from tokenizers import Tokenizer as BackendTokenizer

from miniclip.checkpoint import load_state_dict_checked
from miniclip.config import CLIPConfig
from miniclip.data import CLIP_MEAN, CLIP_STD
from miniclip.model import MiniCLIP
from miniclip.tokenizer import Tokenizer

TOWERS = (("visual", "vision_model", "vision_layers"), ("text", "text_model", "text_layers"))


# ----------------------------------------------------------------------------- the tensors

def _one_to_one_names(cfg: CLIPConfig) -> list[tuple[str, str]]:
    """(miniclip name, transformers name) of every tensor that is copied unchanged."""

    def weight_and_bias(ours, theirs):
        return [(f"{ours}.weight", f"{theirs}.weight"), (f"{ours}.bias", f"{theirs}.bias")]

    names = [
        ("visual.conv1.weight", "vision_model.embeddings.patch_embedding.weight"),
        ("visual.class_embedding", "vision_model.embeddings.class_embedding"),
        ("visual.positional_embedding", "vision_model.embeddings.position_embedding.weight"),
        *weight_and_bias("visual.ln_pre", "vision_model.pre_layrnorm"),
        *weight_and_bias("visual.ln_post", "vision_model.post_layernorm"),
        ("text.token_embedding.weight", "text_model.embeddings.token_embedding.weight"),
        ("text.positional_embedding", "text_model.embeddings.position_embedding.weight"),
        *weight_and_bias("text.ln_final", "text_model.final_layer_norm"),
        ("logit_scale", "logit_scale"),
    ]
    for ours, theirs, layers in TOWERS:
        for i in range(getattr(cfg, layers)):
            a, b = f"{ours}.blocks.{i}", f"{theirs}.encoder.layers.{i}"
            names += [
                *weight_and_bias(f"{a}.ln_1", f"{b}.layer_norm1"),
                *weight_and_bias(f"{a}.attn.out", f"{b}.self_attn.out_proj"),
                *weight_and_bias(f"{a}.ln_2", f"{b}.layer_norm2"),
                *weight_and_bias(f"{a}.mlp.0", f"{b}.mlp.fc1"),
                *weight_and_bias(f"{a}.mlp.2", f"{b}.mlp.fc2"),
            ]
    return names


def to_transformers_state_dict(state: dict[str, torch.Tensor], cfg: CLIPConfig) -> dict[str, torch.Tensor]:
    """A MiniCLIP state dict -> the state dict of the equivalent transformers.CLIPModel."""
    out = {theirs: state[ours] for ours, theirs in _one_to_one_names(cfg)}
    for ours, theirs, layers in TOWERS:
        for i in range(getattr(cfg, layers)):
            for kind in ("weight", "bias"):
                q, k, v = state[f"{ours}.blocks.{i}.attn.qkv.{kind}"].chunk(3)  # [3W, ...] -> 3 x [W, ...]
                for name, t in zip("qkv", (q, k, v)):
                    out[f"{theirs}.encoder.layers.{i}.self_attn.{name}_proj.{kind}"] = t
    out["visual_projection.weight"] = state["visual.proj"].t()  # [W, D] -> [D, W]: x @ proj is Linear(x)
    out["text_projection.weight"] = state["text.proj"].t()
    # transformers never clamps the temperature: export the scale miniclip actually uses.
    out["logit_scale"] = state["logit_scale"].clamp(0, cfg.max_logit_scale)
    return {k: v.contiguous() for k, v in out.items()}


def from_transformers_state_dict(state: dict[str, torch.Tensor], cfg: CLIPConfig) -> dict[str, torch.Tensor]:
    """The state dict of a transformers.CLIPModel -> that of the equivalent MiniCLIP (the inverse of the above)."""
    out = {ours: state[theirs] for ours, theirs in _one_to_one_names(cfg)}
    for ours, theirs, layers in TOWERS:
        for i in range(getattr(cfg, layers)):
            for kind in ("weight", "bias"):
                qkv = [state[f"{theirs}.encoder.layers.{i}.self_attn.{name}_proj.{kind}"] for name in "qkv"]
                out[f"{ours}.blocks.{i}.attn.qkv.{kind}"] = torch.cat(qkv)  # 3 x [W, ...] -> [3W, ...]
    out["visual.proj"] = state["visual_projection.weight"].t()  # [D, W] -> [W, D]
    out["text.proj"] = state["text_projection.weight"].t()
    return {k: v.contiguous() for k, v in out.items()}


# ----------------------------------------------------------------------------- images

@dataclass
class ImageTransform:
    """PIL image(s) -> pixels [B, 3, S, S]: shortest side resized to S (bicubic), centre-cropped, normalised.

    The steps of transformers' CLIPImageProcessor with size = crop size = S. An image that is already S x S
    gives exactly the same pixels on both sides; other sizes agree to resampling differences.
    """

    image_size: int
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD

    def __call__(self, images) -> torch.Tensor:
        if isinstance(images, Image.Image):
            images = [images]
        return torch.stack([self.one(image) for image in images])

    def one(self, image: Image.Image) -> torch.Tensor:
        """One PIL image -> [3, S, S]."""
        S, image = self.image_size, image.convert("RGB")
        w, h = image.size
        size = (S, int(S * h / w)) if w <= h else (int(S * w / h), S)  # shortest side -> S, as transformers rounds
        image = image.resize(size, Image.BICUBIC)
        left, top = (size[0] - S) // 2, (size[1] - S) // 2
        image = image.crop((left, top, left + S, top + S))
        x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)  # [S, S, 3] -> [3, S, S]
        return (x - torch.tensor(self.mean)[:, None, None]) / torch.tensor(self.std)[:, None, None]


# ----------------------------------------------------------------------------- text

class TransformersTokenizer:
    """A transformers tokenizer behind miniclip.Tokenizer's interface, for models made by `from_transformers`.

    encode(list of B strings) -> LongTensor [B, context_length]; decode, context_length, vocab_size, pad_id,
    start_id, end_id as in miniclip.Tokenizer. `image_transform` turns PIL images into the model's pixels.
    """

    def __init__(self, hf_tokenizer, context_length: int, image_transform: ImageTransform | None = None):
        self.hf, self.context_length, self.image_transform = hf_tokenizer, context_length, image_transform
        if self.hf.pad_token is None:
            self.hf.pad_token = self.hf.eos_token
        self.pad_id, self.start_id, self.end_id = self.hf.pad_token_id, self.hf.bos_token_id, self.hf.eos_token_id

    @property
    def vocab_size(self) -> int:
        return len(self.hf)

    def encode(self, texts: list[str] | str) -> torch.Tensor:
        """list of B strings -> LongTensor [B, context_length] (a single string gives [1, context_length])."""
        if isinstance(texts, str):
            texts = [texts]
        return self.hf(list(texts), padding="max_length", truncation=True, max_length=self.context_length,
                       return_tensors="pt")["input_ids"]

    def decode(self, tokens) -> list[str]:
        """LongTensor [B, T] (or a list of id lists) -> B strings, special tokens removed."""
        rows = tokens.tolist() if isinstance(tokens, torch.Tensor) else tokens
        return [s.strip() for s in self.hf.batch_decode(rows, skip_special_tokens=True)]

    def tokenize(self, text: str) -> list[str]:
        """The pieces of one string, special tokens included, for looking at what the tokenizer does."""
        return self.hf.convert_ids_to_tokens(self.hf(text)["input_ids"])

    def __repr__(self):
        return (f"TransformersTokenizer({type(self.hf).__name__}, vocab_size={self.vocab_size}, "
                f"context_length={self.context_length})")


def _transformers_tokenizer(tokenizer, context_length: int):
    """A miniclip.Tokenizer -> a transformers tokenizer that pads and truncates per call, as transformers does."""
    if isinstance(tokenizer, TransformersTokenizer):
        return tokenizer.hf
    backend = BackendTokenizer.from_str(tokenizer.hf.to_str())  # a copy: the caller's tokenizer stays as it is
    backend.no_padding()
    backend.no_truncation()
    token = backend.id_to_token
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, model_max_length=context_length, pad_token=token(tokenizer.pad_id),
        bos_token=token(tokenizer.start_id), eos_token=token(tokenizer.end_id), unk_token=backend.model.unk_token,
    )


# ----------------------------------------------------------------------------- miniclip -> transformers

def transformers_config(cfg: CLIPConfig, logit_scale: float | None = None, pad_id: int = 0, start_id: int = 2):
    """The transformers.CLIPConfig of a MiniCLIP config (raises ValueError for what transformers cannot express)."""
    if cfg.stem_channels:
        raise ValueError(
            f"this model has a convolutional stem (stem_channels={cfg.stem_channels}), which transformers.CLIPModel "
            "has no equivalent of: only plain patch-embedding CLIPs export. Train a preset without a stem "
            "(e.g. CLIPConfig.preset('coco-small'), or any preset with stem_channels=()) to export it."
        )
    if cfg.eot_token_id == 2:
        raise ValueError("eot_token_id 2 cannot be exported: transformers reads eos_token_id == 2 as "
                         "'pool at the highest token id' (a legacy of OpenAI's tokenizer)")
    common = dict(hidden_act=cfg.activation, layer_norm_eps=1e-5, projection_dim=cfg.embed_dim)
    text = dict(
        vocab_size=cfg.vocab_size, max_position_embeddings=cfg.context_length, hidden_size=cfg.text_width,
        intermediate_size=cfg.mlp_ratio * cfg.text_width, num_hidden_layers=cfg.text_layers,
        num_attention_heads=cfg.text_heads, pad_token_id=pad_id, bos_token_id=start_id, eos_token_id=cfg.eot_token_id,
        **common,
    )
    vision = dict(
        image_size=cfg.image_size, patch_size=cfg.patch_size, hidden_size=cfg.vision_width, num_channels=3,
        intermediate_size=cfg.mlp_ratio * cfg.vision_width, num_hidden_layers=cfg.vision_layers,
        num_attention_heads=cfg.vision_heads, **common,
    )
    scale = cfg.init_logit_scale if logit_scale is None else logit_scale
    return transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=cfg.embed_dim,
                                   logit_scale_init_value=float(scale))


def to_transformers(model: MiniCLIP, tokenizer: Tokenizer | TransformersTokenizer | None, out_dir) -> Path:
    """Write `model` and its tokenizer as a transformers CLIP directory; returns its path.

    out_dir gets config.json and model.safetensors (transformers.CLIPModel), the image processor (a
    CLIPImageProcessor that resizes and normalises as ImageTransform does) and, given a tokenizer, the tokenizer
    (the context length as model_max_length), so that AutoProcessor and pipeline("zero-shot-image-classification")
    load it. A model with a convolutional stem (stem_channels) has no transformers equivalent: ValueError.
    """
    cfg, out_dir = model.config, Path(out_dir)
    if tokenizer is not None and tokenizer.end_id != cfg.eot_token_id:
        raise ValueError(f"the tokenizer's end id ({tokenizer.end_id}) is not the model's eot_token_id "
                         f"({cfg.eot_token_id})")
    if tokenizer is not None and tokenizer.vocab_size > cfg.vocab_size:
        raise ValueError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model's vocab_size is "
                         f"{cfg.vocab_size}")
    logit_scale = min(max(model.logit_scale.item(), 0.0), cfg.max_logit_scale)
    ids = dict(pad_id=tokenizer.pad_id, start_id=tokenizer.start_id) if tokenizer is not None else {}
    hf_model = transformers.CLIPModel(transformers_config(cfg, logit_scale, **ids))
    state = to_transformers_state_dict({k: v.detach().cpu().float() for k, v in model.state_dict().items()}, cfg)
    missing, unexpected = hf_model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]  # a buffer transformers fills itself
    if missing or unexpected:
        raise RuntimeError(f"to_transformers: missing {missing}, unexpected {unexpected} (a bug in miniclip/hf.py)")
    hf_model.save_pretrained(out_dir)

    image_processor = transformers.CLIPImageProcessor(
        size={"shortest_edge": cfg.image_size}, crop_size={"height": cfg.image_size, "width": cfg.image_size},
        do_resize=True, do_center_crop=True, resample=3,  # 3 = PIL.Image.BICUBIC
        do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
        image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD),
    )
    if tokenizer is None:
        image_processor.save_pretrained(out_dir)
        return out_dir
    hf_tokenizer = _transformers_tokenizer(tokenizer, cfg.context_length)
    try:
        transformers.CLIPProcessor(image_processor=image_processor, tokenizer=hf_tokenizer).save_pretrained(out_dir)
    except (TypeError, ValueError):  # transformers 4 accepts only CLIP's own tokenizer classes in a CLIPProcessor
        image_processor.save_pretrained(out_dir)
        hf_tokenizer.save_pretrained(out_dir)
    return out_dir


# ----------------------------------------------------------------------------- transformers -> miniclip

def miniclip_config(hf_config, eot_token_id: int | None = None) -> CLIPConfig:
    """The MiniCLIP config of a transformers.CLIPConfig (raises ValueError for what miniclip cannot express)."""
    t, v = hf_config.text_config, hf_config.vision_config
    image_size, patch_size = v.image_size, v.patch_size
    if isinstance(image_size, (list, tuple)) and len(set(image_size)) == 1:
        image_size = image_size[0]
    if isinstance(patch_size, (list, tuple)) and len(set(patch_size)) == 1:
        patch_size = patch_size[0]
    problems = []
    if t.hidden_act != v.hidden_act or t.hidden_act not in ("gelu", "quick_gelu"):
        problems.append(f"activations {t.hidden_act!r} (text) and {v.hidden_act!r} (vision); "
                        "miniclip has one, gelu or quick_gelu")
    ratio = t.intermediate_size / t.hidden_size
    if ratio != v.intermediate_size / v.hidden_size or ratio != int(ratio):
        problems.append("an MLP width that is not the same whole multiple of the width in both towers")
    if not math.isclose(t.layer_norm_eps, 1e-5) or not math.isclose(v.layer_norm_eps, 1e-5):
        problems.append(f"layer_norm_eps {t.layer_norm_eps} / {v.layer_norm_eps}; miniclip uses 1e-5")
    if v.num_channels != 3 or not isinstance(image_size, int) or not isinstance(patch_size, int):
        problems.append(f"{v.num_channels} channels, image size {v.image_size}, patch size {v.patch_size}; "
                        "miniclip takes square RGB images and patches")
    if problems:
        raise ValueError("this transformers CLIP does not fit miniclip: " + "; ".join(problems))
    if eot_token_id is None:
        # eos_token_id == 2 is transformers' legacy marker for OpenAI's tokenizer, whose end token is the highest id.
        eot_token_id = t.vocab_size - 1 if t.eos_token_id == 2 else t.eos_token_id
    return CLIPConfig(
        image_size=image_size, patch_size=patch_size, vision_width=v.hidden_size, vision_layers=v.num_hidden_layers,
        vision_heads=v.num_attention_heads, context_length=t.max_position_embeddings, vocab_size=t.vocab_size,
        eot_token_id=eot_token_id, text_width=t.hidden_size, text_layers=t.num_hidden_layers,
        text_heads=t.num_attention_heads, embed_dim=hf_config.projection_dim,
        mlp_ratio=int(ratio), activation=t.hidden_act,
        init_logit_scale=hf_config.logit_scale_init_value,
    )


def from_transformers(source, tokenizer=None) -> tuple[MiniCLIP, TransformersTokenizer | None]:
    """A transformers CLIP -> (MiniCLIP in eval mode, TransformersTokenizer or None).

    source: a Hub name ("openai/clip-vit-base-patch32"), a local directory (e.g. written by `to_transformers`),
    or a transformers.CLIPModel already built. A name or directory brings its tokenizer and image preprocessing;
    for a built model pass its transformers tokenizer as `tokenizer` (without one, None is returned in its place).
    The returned tokenizer's `image_transform` turns PIL images into the model's input pixels.
    """
    image_mean, image_std = CLIP_MEAN, CLIP_STD
    if isinstance(source, transformers.CLIPModel):
        hf_model = source
    else:
        hf_model = transformers.CLIPModel.from_pretrained(source)
        tokenizer = tokenizer or transformers.AutoTokenizer.from_pretrained(source)
        try:
            image_processor = transformers.AutoImageProcessor.from_pretrained(source)
            image_mean, image_std = tuple(image_processor.image_mean), tuple(image_processor.image_std)
        except (OSError, ValueError):  # no preprocessor_config.json: CLIP's statistics
            pass
    cfg = miniclip_config(hf_model.config, None if tokenizer is None else tokenizer.eos_token_id)
    model = MiniCLIP(cfg)
    state = {k: v.detach().cpu() for k, v in hf_model.state_dict().items()}
    load_state_dict_checked(model, from_transformers_state_dict(state, cfg), "transformers CLIPModel")
    if tokenizer is not None:
        transform = ImageTransform(cfg.image_size, image_mean, image_std)
        tokenizer = TransformersTokenizer(tokenizer, cfg.context_length, transform)
    return model.eval(), tokenizer
