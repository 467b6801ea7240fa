"""miniclip: a small, readable CLIP (Radford et al., 2021) to learn from.

    import miniclip
    model = miniclip.MiniCLIP(miniclip.CLIPConfig.preset("shapes-tiny"))
    logits_per_image, logits_per_text = model(images, tokens)
    loss = miniclip.clip_loss(logits_per_image)
"""
from miniclip.checkpoint import load, save
from miniclip.config import CLIPConfig
from miniclip.loss import clip_loss
from miniclip.model import MiniCLIP
from miniclip.tokenizer import Tokenizer

__all__ = ["CLIPConfig", "MiniCLIP", "Tokenizer", "clip_loss", "load", "save"]
__version__ = "0.1.0"
