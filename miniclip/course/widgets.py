"""Two small interactive apps for the notebooks, built from ipywidgets and matplotlib.

    app = PromptClassifierApp(model, tokenizer, images, classnames=["red circle", "blue star"])
    app            # in a notebook cell: class names, templates, an image picker and a bar chart of probabilities

    search = ImageSearchApp(model, tokenizer, images)
    search         # a text box and the best-matching images as wrapping tiles, with their cosine similarities

Widget callbacks fire only in a live notebook. Everything a callback does is an ordinary method, so a script,
a test or a headless notebook run drives the app by setting values and calling the handler itself:

    app.classes.value = "red circle, blue circle, green circle"
    app.update()   # recomputes app.probs (a tensor [K] that sums to 1) and redraws the chart
    app.probs, app.classnames

Each main part carries a CSS class ("miniclip-classes", "miniclip-probs", ...) so that a browser test can find it.
The apps work with any model that has MiniCLIP's interface, including a real CLIP loaded with
miniclip.hf.from_transformers (images are resized to its input size; pass `preprocess` for its own pipeline).
"""
from __future__ import annotations

import html
import io

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import display
from PIL import Image

from miniclip.course.figures import plot_probabilities
from miniclip.encode import encode_images, encode_texts
from miniclip.zeroshot import SIMPLE_TEMPLATE, check_template, zeroshot_classifier, zeroshot_logits

THUMBNAIL = 160  # pixels: the image picker shows images at about this size
RESULT_SIZE = 128  # pixels: each search result (32 px images 4x, 64 px images 2x, larger ones scaled down)


def parse_classnames(text: str) -> list[str]:
    """"red circle, blue star,, " -> ["red circle", "blue star"]: comma-separated, blanks dropped."""
    return [name.strip() for name in text.split(",") if name.strip()]


def parse_templates(text: str) -> list[str]:
    """One template per line, blank lines dropped; each must hold exactly one {} where the class name goes."""
    return [check_template(line.strip()) for line in text.splitlines() if line.strip()]


def png_bytes(image: np.ndarray, size: int = THUMBNAIL) -> bytes:
    """uint8 [S, S, 3] -> PNG bytes, enlarged by a whole factor with sharp pixels (tiny images stay readable)."""
    image = np.asarray(image, dtype=np.uint8)
    factor = max(1, size // max(image.shape[:2]))
    big = image.repeat(factor, axis=0).repeat(factor, axis=1)
    buffer = io.BytesIO()
    Image.fromarray(big).save(buffer, format="PNG")
    return buffer.getvalue()


def _show_figure(output: widgets.Output, fig) -> None:
    """Replace what `output` shows with fig, then close fig (so that the notebook does not show it a second time)."""
    with output:
        output.clear_output(wait=True)
        display(fig)
    plt.close(fig)


class _App:
    """What both apps share: a root widget that a notebook displays, and image preprocessing."""

    widget: widgets.Widget

    def _inputs(self, images) -> torch.Tensor | np.ndarray:
        """uint8 images [B, S, S, 3] -> what the model's image side takes (see `preprocess`)."""
        return self.preprocess(images) if self.preprocess is not None else images

    def _ipython_display_(self) -> None:  # `app` as the last line of a cell displays the widget (ipywidgets 7 and 8)
        self.display()

    def display(self) -> None:
        display(self.widget)


class PromptClassifierApp(_App):
    """Type class names and templates, pick an image, and watch the zero-shot probabilities change.

    model, tokenizer: a MiniCLIP (or a real CLIP from miniclip.hf.from_transformers) and its tokenizer.
    images: uint8 [N, S, S, 3]. labels: optional N strings shown under the image (e.g. the true class).
    classnames, templates: the starting values (a list, or a comma-separated / one-per-line string).
    preprocess: optional function uint8 [B, S, S, 3] -> normalised float [B, 3, H, W]; by default images are
        normalised with CLIP's statistics and resized to the model's image size (miniclip.evaluate.prepare_images).
    top: how many classes the chart shows.

    After update(): probs (float tensor [K], sums to 1), classnames, templates, index (the image shown),
    prediction (the most probable class name), error (a message when the input cannot be used, else None).
    """

    def __init__(self, model, tokenizer, images, classnames=("red circle", "blue circle", "red square"),
                 templates=(SIMPLE_TEMPLATE,), labels=None, preprocess=None, top: int = 10):
        self.model, self.tokenizer, self.images = model.eval(), tokenizer, images
        self.labels, self.preprocess, self.top = labels, preprocess, top
        if len(images) == 0:
            raise ValueError("PromptClassifierApp needs at least one image")
        if labels is not None and len(labels) != len(images):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        names = classnames if isinstance(classnames, str) else ", ".join(classnames)
        lines = templates if isinstance(templates, str) else "\n".join(templates)

        # The controls. continuous_update=False: recompute on Enter or when the box loses focus, not per key.
        self.classes = widgets.Text(value=names, description="classes", continuous_update=False,
                                    placeholder="comma-separated, e.g. red circle, blue star",
                                    layout=widgets.Layout(width="100%"))
        self.templates_box = widgets.Textarea(value=lines, description="templates", continuous_update=False,
                                              placeholder="one per line, with {} for the class name",
                                              layout=widgets.Layout(width="100%", height="7em"))
        self.picker = widgets.IntSlider(value=0, min=0, max=len(images) - 1, description="image",
                                        continuous_update=False)
        self.image = widgets.Image(format="png", layout=widgets.Layout(width=f"{THUMBNAIL}px", height=f"{THUMBNAIL}px"))
        self.caption = widgets.HTML()
        self.status = widgets.HTML()
        self.output = widgets.Output(layout=widgets.Layout(min_width="420px"))
        for part, name in [(self.classes, "classes"), (self.templates_box, "templates"), (self.picker, "picker"),
                           (self.image, "image"), (self.status, "status"), (self.output, "probs")]:
            part.add_class(f"miniclip-{name}")
        left = widgets.VBox([self.picker, self.image, self.caption])
        self.widget = widgets.VBox([self.classes, self.templates_box, widgets.HBox([left, self.output]), self.status])
        self.widget.add_class("miniclip-prompt-app")

        # Text features depend only on the prompts, image features only on the image: cache each.
        self.classifier, self._prompts = None, None
        self.probs, self.classnames, self.templates, self.prediction, self.error = None, [], [], None, None
        self.classes.observe(self._on_change, names="value")
        self.templates_box.observe(self._on_change, names="value")
        self.picker.observe(self._on_change, names="value")
        self.update()

    @property
    def index(self) -> int:
        """The position of the image shown, in the app's images."""
        return int(self.picker.value)

    def _on_change(self, change) -> None:
        self.update()

    def set_prompts(self, classnames=None, templates=None) -> torch.Tensor | None:
        """Set class names and/or templates (lists or strings), recompute, and return the probabilities."""
        if classnames is not None:
            self.classes.value = classnames if isinstance(classnames, str) else ", ".join(classnames)
        if templates is not None:
            self.templates_box.value = templates if isinstance(templates, str) else "\n".join(templates)
        self.update()
        return self.probs

    def compute(self) -> torch.Tensor:
        """The probabilities [K] of the current image over the current class names (raises ValueError on bad input)."""
        classnames = parse_classnames(self.classes.value)
        templates = parse_templates(self.templates_box.value)
        if not classnames:
            raise ValueError("type at least one class name (comma-separated)")
        if not templates:
            raise ValueError("type at least one template, e.g. a photo of a {}.")
        if self._prompts != (classnames, templates):  # new prompts: a new classifier [D, K]
            self.classifier = zeroshot_classifier(self.model, self.tokenizer, classnames, templates)
            self._prompts = (classnames, templates)
        self.classnames, self.templates = classnames, templates
        batch = self._inputs(self.images[self.index:self.index + 1])
        return zeroshot_logits(self.model, batch, self.classifier).softmax(dim=-1)[0].cpu()  # [K]

    def update(self) -> None:
        """Recompute the probabilities for the current inputs and redraw (the handler of every control)."""
        self.image.value = png_bytes(self.images[self.index])
        self.caption.value = f"<b>{self.labels[self.index]}</b>" if self.labels is not None else ""
        try:
            self.probs = self.compute()
        except ValueError as e:  # a message for the student instead of a traceback
            self.error, self.probs, self.prediction = str(e), None, None
            self.status.value = f"<span style='color:#b00'>{e}</span>"
            self.output.clear_output()
            return
        self.error = None
        best = int(self.probs.argmax())
        self.prediction = self.classnames[best]
        self.status.value = (f"prediction: <b>{self.prediction}</b> ({self.probs[best]:.1%}) from "
                             f"{len(self.classnames)} classes x {len(self.templates)} templates")
        fig = plot_probabilities(self.probs, self.classnames, top=self.top,
                                 title=f"Image {self.index}: zero-shot probabilities")
        _show_figure(self.output, fig)


class ImageSearchApp(_App):
    """Type a description; see the k images whose embeddings are closest to it, with their cosine similarities.

    Image features are computed once, here; each query costs one pass of the text tower.
    images: uint8 [N, S, S, 3]; preprocess as for PromptClassifierApp. labels: optional N strings shown under each
        result (e.g. an image's first caption), so that a student can judge the results without squinting.
    The results are tiles of RESULT_SIZE pixels in a row that wraps, so k = 10 stays readable at any width.
    After update(): query, indices (LongTensor [k], best first), scores (cosines [k]).
    """

    def __init__(self, model, tokenizer, images, query: str = "a red circle", k: int = 5, labels=None,
                 preprocess=None, batch_size: int = 256):
        self.model, self.tokenizer, self.images, self.preprocess = model.eval(), tokenizer, images, preprocess
        self.labels = labels
        if len(images) == 0:
            raise ValueError("ImageSearchApp needs at least one image")
        if labels is not None and len(labels) != len(images):
            raise ValueError(f"ImageSearchApp: {len(images)} images but {len(labels)} labels (one per image, or None)")
        if preprocess is None:
            self.image_features = encode_images(model, images, batch_size=batch_size)  # [N, D], unit length
        else:
            self.image_features = torch.cat([encode_images(model, self._inputs(images[i:i + batch_size]))
                                             for i in range(0, len(images), batch_size)])
        self.query_box = widgets.Text(value=query, description="search", continuous_update=False,
                                      placeholder="describe an image, then press Enter",
                                      layout=widgets.Layout(width="100%"))
        self.k_slider = widgets.IntSlider(value=min(k, len(images)), min=1, max=min(10, len(images)),
                                          description="results", continuous_update=False)
        self.status = widgets.HTML()
        # A flex row that wraps: as many tiles to a row as the notebook's width holds, never a horizontal scroll.
        self.results = widgets.Box(layout=widgets.Layout(display="flex", flex_flow="row wrap", width="100%"))
        for part, name in [(self.query_box, "query"), (self.k_slider, "k"), (self.status, "status"),
                           (self.results, "results")]:
            part.add_class(f"miniclip-{name}")
        self.widget = widgets.VBox([widgets.HBox([self.query_box, self.k_slider]), self.results, self.status])
        self.widget.add_class("miniclip-search-app")
        self.query, self.indices, self.scores, self.error = None, None, None, None
        self.query_box.observe(lambda change: self.update(), names="value")
        self.k_slider.observe(lambda change: self.update(), names="value")
        self.update()

    def search(self, query: str, k: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """query -> (image indices [k], cosine similarities [k]), best first."""
        k = min(k or self.k_slider.value, len(self.images))
        text = encode_texts(self.model, self.tokenizer, [query]).to(self.image_features.device)  # [1, D]
        cosines = (self.image_features @ text.t())[:, 0].cpu()  # [N]
        scores, indices = cosines.topk(k)
        return indices, scores

    def _tile(self, rank: int, index: int, score: float) -> widgets.VBox:
        """One result: the image, its rank and cosine, its index and (if given) its label."""
        size = f"{RESULT_SIZE}px"
        picture = widgets.Image(value=png_bytes(self.images[index], RESULT_SIZE), format="png",
                                layout=widgets.Layout(width=size, height=size, object_fit="contain"))
        label = f"<br><i>{html.escape(str(self.labels[index]))}</i>" if self.labels is not None else ""
        text = widgets.HTML(f"<div style='text-align:center; font-size:12px; line-height:1.25'><b>#{rank}</b> "
                            f"cosine {score:.3f}<br>image {index}{label}</div>", layout=widgets.Layout(width=size))
        tile = widgets.VBox([picture, text], layout=widgets.Layout(width=size, margin="0 10px 10px 0"))
        tile.add_class("miniclip-result")
        return tile

    def update(self) -> None:
        """Run the query in the text box and redraw the results (the handler of every control)."""
        query = self.query_box.value.strip()
        if not query:
            self.error, self.indices, self.scores = "type a description to search for", None, None
            self.status.value = self.error
            self.results.children = ()
            return
        self.error, self.query = None, query
        self.indices, self.scores = self.search(query)
        self.status.value = f"best match: image {int(self.indices[0])} (cosine {float(self.scores[0]):.3f}) " \
                            f"of {len(self.images)}"
        self.results.children = tuple(self._tile(rank, int(i), float(s))
                                      for rank, (i, s) in enumerate(zip(self.indices, self.scores), start=1))
