"""Convert between MiniCLIP and Hugging Face `transformers.CLIPModel`, in both directions.

    to_transformers(model, tokenizer, "export/")   # then CLIPModel.from_pretrained("export/"), or
                                                    # pipeline("zero-shot-image-classification", model="export/")
    model, tok = from_transformers("openai/clip-vit-base-patch32")    # OpenAI's weights, as a MiniCLIP
    pixels = tok.image_transform(pil_images)        # [B, 3, 224, 224]: transformers' CLIPImageProcessor
    logits_per_image, _ = model(pixels, tok.encode(["a photo of a cat.", "a photo of a dog."]))

Both compute the same function; only the names and the layout of the tensors differ. The tables below pair
the names; two tensors change layout: a block's attn.qkv [3W, W] is transformers' q_proj, k_proj and v_proj
(3 x [W, W], in that order), and a tower's proj [W, D] is its *_projection.weight [D, W], transposed.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import torch
import transformers

from miniclip.checkpoint import check_tokenizer, load_state_dict_checked
from miniclip.config import CLIPConfig
from miniclip.data import CLIP_MEAN, CLIP_STD
from miniclip.model import MiniCLIP
from miniclip.tokenizer import Tokenizer


# ----------------------------------------------------------------------------- the tensors

# miniclip name -> transformers name, for the tensors copied unchanged.
TENSORS = [
    ("visual.conv1.weight", "vision_model.embeddings.patch_embedding.weight"),
    ("visual.class_embedding", "vision_model.embeddings.class_embedding"),
    ("visual.positional_embedding", "vision_model.embeddings.position_embedding.weight"),  # an nn.Embedding there
    ("text.token_embedding.weight", "text_model.embeddings.token_embedding.weight"),
    ("text.positional_embedding", "text_model.embeddings.position_embedding.weight"),
    ("logit_scale", "logit_scale"),
]
LAYERS = [  # LayerNorms and Linears: a .weight and a .bias each
    ("visual.ln_pre", "vision_model.pre_layrnorm"),  # (sic)
    ("visual.ln_post", "vision_model.post_layernorm"),
    ("text.ln_final", "text_model.final_layer_norm"),
]
BLOCK_LAYERS = [("ln_1", "layer_norm1"), ("attn.out", "self_attn.out_proj"), ("ln_2", "layer_norm2"),
                ("mlp.0", "mlp.fc1"), ("mlp.2", "mlp.fc2")]  # in every block: {tower}.blocks.{i} / .encoder.layers.{i}
TOWERS = (("visual", "vision_model", "vision_layers"), ("text", "text_model", "text_layers"))
PROJECTIONS = (("visual.proj", "visual_projection.weight"), ("text.proj", "text_projection.weight"))  # [W, D], [D, W]


def _blocks(cfg: CLIPConfig):
    """(miniclip prefix, transformers prefix) of every Transformer block of both towers."""
    return [(f"{ours}.blocks.{i}", f"{theirs}.encoder.layers.{i}")
            for ours, theirs, layers in TOWERS for i in range(getattr(cfg, layers))]


def _one_to_one_names(cfg: CLIPConfig) -> list[tuple[str, str]]:
    """(miniclip name, transformers name) of every tensor that is copied unchanged."""
    layers = LAYERS + [(f"{a}.{ours}", f"{b}.{theirs}") for a, b in _blocks(cfg) for ours, theirs in BLOCK_LAYERS]
    return TENSORS + [(f"{ours}.{kind}", f"{theirs}.{kind}") for ours, theirs in layers for kind in ("weight", "bias")]


def _qkv_names(cfg: CLIPConfig) -> list[tuple[str, list[str]]]:
    """(miniclip name, the transformers names of its q, k and v rows) of every attention input projection."""
    return [(f"{a}.attn.qkv.{kind}", [f"{b}.self_attn.{n}_proj.{kind}" for n in "qkv"])
            for a, b in _blocks(cfg) for kind in ("weight", "bias")]


def to_transformers_state_dict(state: dict[str, torch.Tensor], cfg: CLIPConfig) -> dict[str, torch.Tensor]:
    """A MiniCLIP state dict -> the state dict of the equivalent transformers.CLIPModel."""
    out = {theirs: state[ours] for ours, theirs in _one_to_one_names(cfg)}
    for ours, theirs in _qkv_names(cfg):
        out.update(zip(theirs, state[ours].chunk(3)))  # [3W, ...] -> 3 x [W, ...]: rows q, k, v
    for ours, theirs in PROJECTIONS:
        out[theirs] = state[ours].t()  # [W, D] -> [D, W]: x @ proj is Linear(x)
    # transformers never clamps the temperature: export the scale miniclip actually uses.
    out["logit_scale"] = state["logit_scale"].clamp(0, cfg.max_logit_scale)
    return {k: v.contiguous() for k, v in out.items()}


def from_transformers_state_dict(state: dict[str, torch.Tensor], cfg: CLIPConfig) -> dict[str, torch.Tensor]:
    """The state dict of a transformers.CLIPModel -> that of the equivalent MiniCLIP (the inverse of the above)."""
    out = {ours: state[theirs] for ours, theirs in _one_to_one_names(cfg)}
    for ours, theirs in _qkv_names(cfg):
        out[ours] = torch.cat([state[name] for name in theirs])  # 3 x [W, ...] -> [3W, ...]
    for ours, theirs in PROJECTIONS:
        out[ours] = state[theirs].t()  # [D, W] -> [W, D]
    return {k: v.contiguous() for k, v in out.items()}


# ----------------------------------------------------------------------------- images

def clip_image_processor(image_size: int, mean=CLIP_MEAN, std=CLIP_STD) -> transformers.CLIPImageProcessor:
    """transformers' CLIPImageProcessor for an S px model: PIL images -> pixel_values [B, 3, S, S], in these steps:"""
    return transformers.CLIPImageProcessor(
        do_resize=True, size={"shortest_edge": image_size}, resample=3,  # shortest side -> S, 3 = bicubic
        do_center_crop=True, crop_size={"height": image_size, "width": image_size},  # the centre S x S
        do_rescale=True, rescale_factor=1 / 255, do_normalize=True, image_mean=list(mean), image_std=list(std),
    )


# ----------------------------------------------------------------------------- text

class TransformersTokenizer:
    """A transformers tokenizer behind miniclip.Tokenizer's interface, for models made by `from_transformers`,
    plus image_transform: PIL images -> the model's pixels [B, 3, S, S] by its transformers image processor."""

    def __init__(self, hf_tokenizer, context_length: int, image_processor):
        self.hf, self.context_length, self.image_processor = hf_tokenizer, context_length, image_processor
        if self.hf.pad_token is None:
            self.hf.pad_token = self.hf.eos_token
        self.pad_id, self.start_id, self.end_id = self.hf.pad_token_id, self.hf.bos_token_id, self.hf.eos_token_id

    @property
    def vocab_size(self) -> int:
        """The number of token ids."""
        return len(self.hf)

    def encode(self, texts: list[str] | str) -> torch.Tensor:
        """list of B strings -> LongTensor [B, context_length] (a single string gives [1, context_length])."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        return self.hf(texts, padding="max_length", truncation=True, max_length=self.context_length,
                       return_tensors="pt")["input_ids"]

    def decode(self, tokens) -> list[str]:
        """LongTensor [B, T] (or a list of id lists) -> B strings, special tokens removed."""
        rows = tokens.tolist() if isinstance(tokens, torch.Tensor) else tokens
        return [s.strip() for s in self.hf.batch_decode(rows, skip_special_tokens=True)]

    def tokenize(self, text: str) -> list[str]:
        """The pieces of one string, special tokens included, for looking at what the tokenizer does."""
        return self.hf.convert_ids_to_tokens(self.hf(text)["input_ids"])

    def image_transform(self, images) -> torch.Tensor:
        """PIL image(s) -> pixels [B, 3, S, S], resized, cropped and normalised by the model's image processor."""
        return self.image_processor(images=images, return_tensors="pt")["pixel_values"]

    def __repr__(self):
        return (f"TransformersTokenizer({type(self.hf).__name__}, vocab_size={self.vocab_size}, "
                f"context_length={self.context_length})")


def _transformers_tokenizer(tokenizer, context_length: int):
    """A miniclip.Tokenizer -> a transformers tokenizer that pads and truncates per call, as transformers does."""
    if isinstance(tokenizer, TransformersTokenizer):
        return tokenizer.hf
    backend = tokenizer.unpadded()  # a copy without padding and truncation: transformers does both per call
    token = backend.id_to_token
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, model_max_length=context_length, pad_token=token(tokenizer.pad_id),
        bos_token=token(tokenizer.start_id), eos_token=token(tokenizer.end_id), unk_token=backend.model.unk_token,
        model_input_names=["input_ids", "attention_mask"],  # CLIPModel takes no token_type_ids (transformers 4 adds them)
    )


# ----------------------------------------------------------------------------- miniclip -> transformers

def transformers_config(cfg: CLIPConfig, logit_scale: float | None = None, pad_id: int = 0, start_id: int = 2):
    """The transformers.CLIPConfig of a MiniCLIP config (raises ValueError for what transformers cannot express)."""
    if cfg.stem_channels:
        raise ValueError(f"this model has a convolutional stem (stem_channels={cfg.stem_channels}), which "
                         "transformers.CLIPModel has no equivalent of: train a preset without a stem (e.g. "
                         "coco-small, or any with stem_channels=()) to export it")
    if cfg.eot_token_id == 2:
        raise ValueError("eot_token_id 2 cannot be exported: transformers reads eos_token_id == 2 as "
                         "'pool at the highest token id' (a legacy of OpenAI's tokenizer)")
    common = dict(hidden_act=cfg.activation, layer_norm_eps=1e-5, projection_dim=cfg.embed_dim)
    text = dict(vocab_size=cfg.vocab_size, max_position_embeddings=cfg.context_length, hidden_size=cfg.text_width,
                intermediate_size=cfg.mlp_ratio * cfg.text_width, num_hidden_layers=cfg.text_layers,
                num_attention_heads=cfg.text_heads, pad_token_id=pad_id, bos_token_id=start_id,
                eos_token_id=cfg.eot_token_id, **common)
    vision = dict(image_size=cfg.image_size, patch_size=cfg.patch_size, hidden_size=cfg.vision_width, num_channels=3,
                  intermediate_size=cfg.mlp_ratio * cfg.vision_width, num_hidden_layers=cfg.vision_layers,
                  num_attention_heads=cfg.vision_heads, **common)
    scale = cfg.init_logit_scale if logit_scale is None else logit_scale
    return transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=cfg.embed_dim,
                                   logit_scale_init_value=float(scale))


def to_transformers(model: MiniCLIP, tokenizer: Tokenizer | TransformersTokenizer | None, out_dir,
                    overwrite: bool = False) -> Path:
    """Write `model` and its tokenizer as a transformers CLIP directory; returns its path.

    out_dir gets config.json and model.safetensors (transformers.CLIPModel), the image processor and, given a
    tokenizer, the tokenizer, so that AutoTokenizer, AutoImageProcessor and pipeline("zero-shot-image-classification")
    load it, and AutoProcessor on transformers 5 (transformers 4's CLIPProcessor takes only OpenAI's tokenizer). An
    out_dir that holds anything is refused (FileExistsError) unless overwrite=True, which replaces it. A model
    with a convolutional stem has no transformers equivalent: ValueError, before anything is written.
    """
    cfg, out_dir = model.config, Path(out_dir)
    if tokenizer is not None:
        check_tokenizer(tokenizer, cfg, "to_transformers")
    logit_scale = min(max(model.logit_scale.item(), 0.0), cfg.max_logit_scale)
    ids = dict(pad_id=tokenizer.pad_id, start_id=tokenizer.start_id) if tokenizer is not None else {}
    hf_model = transformers.CLIPModel(transformers_config(cfg, logit_scale, **ids))
    state = to_transformers_state_dict({k: v.detach().cpu().float() for k, v in model.state_dict().items()}, cfg)
    hf_model.load_state_dict(state)  # strict: a tensor missing on either side is a bug in this file
    if out_dir.exists() and (out_dir.is_file() or any(out_dir.iterdir())) and not overwrite:
        raise FileExistsError(f"{out_dir} already exists and is not empty: choose another folder, or replace "
                              "what it holds with --overwrite (overwrite=True)")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.parent / f".{out_dir.name}.{os.urandom(4).hex()}.tmp"
    staging.mkdir()  # mkdir, not mkdtemp: the usual permissions (umask), as every file miniclip writes
    try:  # everything is written beside out_dir first: a failure (disk full) leaves what out_dir held untouched
        _write_transformers(hf_model, tokenizer, cfg, staging)
        if out_dir.is_dir():
            shutil.rmtree(out_dir)
        elif out_dir.exists():
            out_dir.unlink()
        staging.rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def _write_transformers(hf_model, tokenizer, cfg: CLIPConfig, out_dir: Path) -> None:
    """The files of a transformers CLIP directory: model, image processor and, given one, the tokenizer."""
    hf_model.save_pretrained(out_dir)
    image_processor = clip_image_processor(cfg.image_size)
    if tokenizer is None:
        image_processor.save_pretrained(out_dir)
        return
    hf_tokenizer = _transformers_tokenizer(tokenizer, cfg.context_length)
    try:
        transformers.CLIPProcessor(image_processor=image_processor, tokenizer=hf_tokenizer).save_pretrained(out_dir)
    except (TypeError, ValueError):  # transformers 4 accepts only CLIP's own tokenizer classes in a CLIPProcessor
        image_processor.save_pretrained(out_dir)
        hf_tokenizer.save_pretrained(out_dir)


# ----------------------------------------------------------------------------- transformers -> miniclip

def miniclip_config(hf_config, eot_token_id: int | None = None) -> CLIPConfig:
    """The MiniCLIP config of a transformers.CLIPConfig (raises ValueError for what miniclip cannot express)."""
    t, v = hf_config.text_config, hf_config.vision_config
    image_size, patch_size = (size[0] if isinstance(size, (list, tuple)) and len(set(size)) == 1 else size
                              for size in (v.image_size, v.patch_size))  # a square (S, S) -> S
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
        text_heads=t.num_attention_heads, embed_dim=hf_config.projection_dim, mlp_ratio=int(ratio),
        activation=t.hidden_act, init_logit_scale=hf_config.logit_scale_init_value)


def from_transformers(source, tokenizer=None) -> tuple[MiniCLIP, TransformersTokenizer | None]:
    """A transformers CLIP -> (MiniCLIP in eval mode, TransformersTokenizer or None).

    source: a Hub name ("openai/clip-vit-base-patch32"), a local directory (e.g. written by `to_transformers`),
    or a transformers.CLIPModel already built. A name or directory brings its tokenizer and image processor;
    for a built model pass its transformers tokenizer as `tokenizer` (without one, None is returned in its place)
    and its images are prepared by clip_image_processor.
    """
    if isinstance(source, transformers.CLIPModel):
        hf_model, image_processor = source, None
    else:
        config = Path(source) / "config.json"  # a local folder must be a transformers CLIP (a Hub name: see below)
        if Path(source).is_dir() and (not config.is_file()
                                      or json.loads(config.read_text()).get("model_type") != "clip"):
            raise ValueError(f"{source} is not a transformers CLIP folder (its config.json has no model_type 'clip'); "
                             f"a miniclip run folder loads with miniclip.load({str(source)!r})")
        hf_model, loading = transformers.CLIPModel.from_pretrained(source, output_loading_info=True)
        if loading["missing_keys"]:  # transformers would start those weights at random, and say so only in a log
            raise ValueError(f"{source}: {len(loading['missing_keys'])} weights of its CLIPModel are missing "
                             f"(e.g. {sorted(loading['missing_keys'])[0]}): not a complete CLIP checkpoint")
        tokenizer = tokenizer or transformers.AutoTokenizer.from_pretrained(source)
        try:
            image_processor = transformers.AutoImageProcessor.from_pretrained(source)
        except (OSError, ValueError):  # no preprocessor_config.json: CLIP's, below
            image_processor = None
    cfg = miniclip_config(hf_model.config, None if tokenizer is None else tokenizer.eos_token_id)
    model = MiniCLIP(cfg)
    state = {k: v.detach().cpu() for k, v in hf_model.state_dict().items()}
    load_state_dict_checked(model, from_transformers_state_dict(state, cfg), "transformers CLIPModel")
    if tokenizer is not None:
        image_processor = image_processor or clip_image_processor(cfg.image_size)
        tokenizer = TransformersTokenizer(tokenizer, cfg.context_length, image_processor)
    return model.eval(), tokenizer
