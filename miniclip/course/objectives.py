"""Two predictive objectives beside CLIP's contrastive one (the paper's Fig. 2): same image tower, other losses.

The CLIP paper first tried to *predict* the caption from the image and found it slow: a Transformer language model
(a captioner) learned zero-shot ImageNet 3x more slowly than a model predicting only the caption's bag of words,
which learned 4x more slowly than the contrastive objective. Both predictive models are here, built on the
image tower of miniclip.model (VisionTransformer: image -> one feature vector) so that only the objective differs:

    bow = BagOfWords(config, vocabulary)        # feature -> a distribution over words: which words the caption has
    cap = Captioner(config)                     # feature -> a causal Transformer that writes the caption token by token
    loss = bow.loss(images, targets)            # cross-entropy with the caption's word set (bow_targets)
    loss = cap.loss(images, tokens)             # next-token cross-entropy over the caption
    scores = bow.class_scores(images, words)    # [N, K]: zero-shot, sum of the class words' log-probabilities
    scores = cap.class_scores(images, tokens)   # [N, K]: zero-shot, each class caption's log-likelihood

Neither model embeds text, so zero-shot classification asks each one how likely each class's caption (or its
words) is for the image, and picks the most likely class.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from miniclip.config import CLIPConfig
from miniclip.model import Block, VisionTransformer


# ---- bag of words: which words does the caption contain? -------------------------------------------------------

def caption_words(caption: str) -> list[str]:
    """The words of a caption, lower-case, punctuation dropped: "A photo of a red circle." -> [a, photo, of, ...]."""
    return caption.lower().replace(".", " ").replace(",", " ").split()


def word_vocabulary(captions: list[str]) -> list[str]:
    """Every distinct word of the captions, sorted: the bag-of-words model's output classes."""
    return sorted({w for c in captions for w in caption_words(c)})


def bow_targets(captions: list[str], vocabulary: list[str]) -> torch.Tensor:
    """captions (C strings) -> targets [C, V]: 1 / |words| on each word the caption contains (its word *set*), 0
    elsewhere; each row sums to 1. A word that occurs twice counts once; words outside the vocabulary are an error."""
    index = {w: i for i, w in enumerate(vocabulary)}
    targets = torch.zeros(len(captions), len(vocabulary))  # [C, V]
    for row, caption in enumerate(captions):
        words = set(caption_words(caption))
        unknown = sorted(words - set(index))
        if unknown:
            raise ValueError(f"bow_targets: caption {caption!r} has words outside the vocabulary: {unknown}; "
                             "build the vocabulary with word_vocabulary() from captions that include it")
        targets[row, [index[w] for w in words]] = 1.0 / len(words)
    return targets


class BagOfWords(nn.Module):
    """Image -> log-probabilities over the caption words [B, V]: the image tower, then one linear layer."""

    def __init__(self, config: CLIPConfig, vocabulary: list[str]):
        super().__init__()
        self.config, self.vocabulary = config, list(vocabulary)
        self.visual = VisionTransformer(config)
        self.head = nn.Linear(config.embed_dim, len(self.vocabulary))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, H, W], normalised -> log-probabilities [B, V] (each row a distribution over words)."""
        return self.head(self.visual(images)).log_softmax(dim=-1)  # [B, embed_dim] -> [B, V]

    def loss(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy between the predicted word distribution and targets [B, V] (bow_targets rows), nats."""
        return -(targets * self(images)).sum(dim=-1).mean()

    def class_scores(self, images: torch.Tensor, class_words: list[list[str]]) -> torch.Tensor:
        """Zero-shot scores [B, K]: for class k, the sum of the log-probabilities of its words (["red", "circle"])."""
        index = {w: i for i, w in enumerate(self.vocabulary)}
        missing = sorted({w for words in class_words for w in words} - set(index))
        if missing:
            raise ValueError(f"class words {missing} are not in the bag-of-words vocabulary; it knows only the "
                             "words of its training captions")
        log_p = self(images)  # [B, V]
        return torch.stack([log_p[:, [index[w] for w in words]].sum(dim=-1) for words in class_words], dim=1)


# ---- captioner: a language model that reads the image first ------------------------------------------------------

class Captioner(nn.Module):
    """Image + caption tokens -> next-token logits: a causal Transformer whose <start> token carries the image.

    The image tower's feature [B, embed_dim] is projected to the text width and added to the embedding of the
    <start> token (position 0), so every later token can attend to it; the decoder is the text tower's size
    (config.text_width, text_layers, text_heads) and predicts each next token, <end> included.
    """

    def __init__(self, config: CLIPConfig, pad_id: int = 0):
        super().__init__()
        self.config, self.pad_id, width = config, pad_id, config.text_width
        self.visual = VisionTransformer(config)
        self.image_in = nn.Linear(config.embed_dim, width)  # the image feature, as a token of the decoder
        # named "text" like CLIP's text tower, so that TrainConfig.text_lr_scale treats both alike
        self.text = nn.ModuleDict(dict(
            token_embedding=nn.Embedding(config.vocab_size, width),
            blocks=nn.ModuleList(Block(width, config.text_heads, config.mlp_ratio, config.activation, causal=True)
                                 for _ in range(config.text_layers)),
            ln_final=nn.LayerNorm(width),
        ))
        self.text.positional_embedding = nn.Parameter(0.01 * torch.randn(config.context_length, width))
        self.head = nn.Linear(width, config.vocab_size)  # [.., width] -> a score for every token id

    def logits(self, image_features: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """image_features [B, embed_dim] (the image tower's output), tokens [B, T] -> next-token logits [B, T, vocab].

        logits[:, t] predicts tokens[:, t + 1]."""
        text = self.text
        x = text.token_embedding(tokens) + text.positional_embedding[: tokens.shape[1]]  # [B, T, width]
        image_token = self.image_in(image_features)[:, None, :]  # [B, 1, width]
        x = torch.cat([x[:, :1] + image_token, x[:, 1:]], dim=1)  # [B, T, width]: <start> + the image
        for block in text.blocks:
            x = block(x)  # causal: token t sees tokens 0..t, and so the image
        return self.head(text.ln_final(x))  # [B, T, vocab]

    def token_log_likelihood(self, image_features: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """log p(each token | the image, the tokens before it) [B, T - 1], 0 at padding (after <end>)."""
        log_p = self.logits(image_features, tokens[:, :-1]).log_softmax(dim=-1)  # [B, T - 1, vocab]
        target = tokens[:, 1:]  # [B, T - 1]: the next token of every position
        picked = log_p.gather(-1, target[..., None])[..., 0]  # [B, T - 1]
        return picked.masked_fill(target == self.pad_id, 0.0)

    def loss(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """The mean next-token cross-entropy (nats per token) of tokens [B, T] given images [B, 3, H, W]."""
        tokens = _trim(tokens, self.pad_id)
        nll = -self.token_log_likelihood(self.visual(images), tokens)  # [B, T - 1]
        return nll.sum() / (tokens[:, 1:] != self.pad_id).sum()

    @torch.no_grad()
    def class_scores(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Zero-shot scores [B, K]: the log-likelihood (nats) of each class caption tokens [K, T] for each image."""
        tokens = _trim(tokens, self.pad_id)
        features = self.visual(images)  # [B, embed_dim]
        B, (K, T) = len(features), tokens.shape
        pairs_features = features.repeat_interleave(K, dim=0)  # [B * K, embed_dim]: image b, K times
        pairs_tokens = tokens.repeat(B, 1)  # [B * K, T]: the K captions, once per image
        return self.token_log_likelihood(pairs_features, pairs_tokens).sum(dim=1).view(B, K)  # [B * K] -> [B, K]


def _trim(tokens: torch.Tensor, pad_id: int) -> torch.Tensor:
    """tokens [B, T] -> [B, T'] without the columns that are padding in every row (a shorter, identical loss)."""
    used = (tokens != pad_id).any(dim=0).nonzero()
    return tokens[:, : int(used.max()) + 1] if len(used) else tokens
