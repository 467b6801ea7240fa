"""miniclip: a small, readable CLIP (Radford et al., 2021) to learn from.

    import miniclip
    model = miniclip.MiniCLIP(miniclip.CLIPConfig.preset("shapes-tiny"))
    logits_per_image, logits_per_text = model(images, tokens)
    loss = miniclip.clip_loss(logits_per_image)
"""
from miniclip.versions import check_dependencies

check_dependencies()  # before torch is imported: an old torch gets one clear message, not an obscure failure

from miniclip.checkpoint import load, save  # noqa: E402
from miniclip.config import CLIPConfig  # noqa: E402
from miniclip.loss import clip_loss  # noqa: E402
from miniclip.model import MiniCLIP  # noqa: E402
from miniclip.tokenizer import Tokenizer  # noqa: E402

__all__ = ["CLIPConfig", "MiniCLIP", "Tokenizer", "clip_loss", "load", "save"]
__version__ = "0.1.0"
