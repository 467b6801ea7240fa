"""A tiny, randomly initialised stand-in for openai/clip-vit-base-patch32, written as transformers writes it.

    write_tiny_clip(folder, captions, seed)    # config.json, model.safetensors, tokenizer and processor files

Its tokenizer is CLIP's byte-level BPE, with merges learned from the stand-in captions (learn_merges), so
transformers' own CLIPTokenizer reads it; miniclip.hf.from_transformers and the lessons load it like the real one.
"""
from __future__ import annotations

import json
import re
import tempfile
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import torch

from miniclip.data import CLIP_MEAN, CLIP_STD


@contextmanager
def no_progress_bars(library):
    """datasets' or transformers.utils.logging's progress bars off for a few small writes, then as they were."""
    was_on = library.is_progress_bar_enabled()
    library.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            library.enable_progress_bar()


def byte_table() -> dict[int, str]:
    """CLIP's (and GPT-2's) byte-level alphabet: byte value -> one printable character, in vocabulary order
    (the printable bytes as themselves first, then the others mapped above 255)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return {**{b: chr(b) for b in printable}, **{b: chr(256 + k) for k, b in enumerate(others)}}


def learn_merges(texts, max_merges: int = 2000) -> list[tuple[str, str]]:
    """Byte-pair merges learned from texts the way CLIP's were: lower-case words, "</w>" on each word's last
    symbol; the most frequent pair is merged until none occurs twice (ties: the first in sorted order)."""
    symbol = byte_table()
    words = Counter(w for t in texts for w in re.findall(r"'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|[^\s\w]+", t.lower()))
    pieces = {}
    for w, n in words.items():
        chars = [symbol[b] for b in w.encode("utf-8")]
        pieces[tuple(chars[:-1] + [chars[-1] + "</w>"])] = n
    merges = []
    while len(merges) < max_merges:
        pairs = Counter()
        for word, n in pieces.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += n
        if not pairs or max(pairs.values()) < 2:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        pieces = {_merge(word, best): n for word, n in pieces.items()}
    return merges


def _merge(word: tuple, pair: tuple) -> tuple:
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(word[i] + word[i + 1])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def write_tiny_clip(folder: Path, texts, seed: int) -> dict:
    """A tiny randomly initialised transformers.CLIPModel with openai/clip-vit-base-patch32's config fields,
    image processor and tokenizer files. Its vocabulary is laid out as CLIP's: 256 bytes, the 256 bytes + "</w>",
    one entry per merge, then <|startoftext|> and <|endoftext|> (the highest id, where the text feature is read)."""
    import transformers  # here, not at the top: slow to import (seconds), and only this stand-in needs it

    merges = learn_merges(texts)
    alphabet = list(byte_table().values())
    tokens = alphabet + [s + "</w>" for s in alphabet] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}  # a merge may repeat a token: keep the first
    with tempfile.TemporaryDirectory() as tmp:  # the original files, read back by transformers' own loader
        (Path(tmp) / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        (Path(tmp) / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges),
                                              encoding="utf-8")  # fmt: skip
        (Path(tmp) / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 77, "do_lower_case": True}))
        tokenizer = transformers.CLIPTokenizer.from_pretrained(tmp)
    hidden = dict(hidden_size=32, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                  hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=32)
    # bos 0, pad 1, eos 2 are the real checkpoint's text ids; transformers reads eos 2 as "pool at the highest id"
    text = dict(vocab_size=len(vocab), max_position_embeddings=77, bos_token_id=0, pad_token_id=1, eos_token_id=2,
                **hidden)  # fmt: skip
    config = transformers.CLIPConfig(text_config=text, vision_config=dict(image_size=32, patch_size=8, **hidden),
                                     projection_dim=32, logit_scale_init_value=2.6592)  # fmt: skip
    with torch.random.fork_rng(devices=[]):  # a seeded initialisation that leaves the caller's generator alone
        torch.manual_seed(seed)
        model = transformers.CLIPModel(config)
    with no_progress_bars(transformers.utils.logging):
        model.save_pretrained(folder)
    image_processor = transformers.CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, do_resize=True, do_center_crop=True,
        resample=3, do_rescale=True, rescale_factor=1 / 255, do_normalize=True, do_convert_rgb=True,
        image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD),
    )  # fmt: skip
    transformers.CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    image_processor.save_pretrained(folder)  # preprocessor_config.json too, as the real repository has
    return {"vocab_size": len(vocab), "merges": len(merges), "parameters": sum(p.numel() for p in model.parameters())}
