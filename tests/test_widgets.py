"""The notebook apps, driven without a browser: set a control's value, call the handler, read the numbers."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
from PIL import Image

from miniclip import CLIPConfig, MiniCLIP, Tokenizer
from miniclip.data import shapes
from miniclip.course.widgets import ImageSearchApp, PromptClassifierApp, parse_classnames, parse_templates
from miniclip.zeroshot import SHAPES_TEMPLATES, zeroshot_classifier, zeroshot_logits


@pytest.fixture(scope="module")
def tiny():
    """An untrained shapes-tiny model, a tokenizer trained on a few captions, and 12 single-object images."""
    torch.manual_seed(0)
    data, labels = shapes.single_object_set(1, seed=5)
    tokenizer = Tokenizer.train(data.captions + shapes.class_names(), vocab_size=300, context_length=32)
    model = MiniCLIP(CLIPConfig.preset("shapes-tiny", eot_token_id=tokenizer.end_id)).eval()
    return model, tokenizer, data.images[:12], [shapes.class_names()[i] for i in labels[:12]]


def test_parsers():
    assert parse_classnames(" red circle, blue star,, ") == ["red circle", "blue star"]
    assert parse_templates("a photo of a {}.\n\n a {}. \n") == ["a photo of a {}.", "a {}."]
    for bad in ("a photo of a thing", "{} and {}", "a {name}", "a {"):
        with pytest.raises(ValueError, match="exactly one"):
            parse_templates(bad)


def test_prompt_app_probabilities(tiny):
    model, tokenizer, images, labels = tiny
    app = PromptClassifierApp(model, tokenizer, images, classnames="red circle, blue star", labels=labels)
    assert app.classnames == ["red circle", "blue star"] and app.probs.shape == (2,)
    assert app.probs.sum().item() == pytest.approx(1.0, abs=1e-5)
    before = app.probs.clone()

    app.classes.value = "red circle, blue star, green heart"  # what typing in the box does...
    app.update()  # ...and what its callback does (callbacks do not fire here)
    assert app.classnames == ["red circle", "blue star", "green heart"]
    assert app.probs.shape == (3,) and app.probs.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert not torch.allclose(app.probs[:2], before)  # a new class takes probability from the others

    # The same numbers as zeroshot.py, called directly.
    app.set_prompts(templates=SHAPES_TEMPLATES[:3])
    app.picker.value = 4
    app.update()
    classifier = zeroshot_classifier(model, tokenizer, app.classnames, SHAPES_TEMPLATES[:3])
    direct = zeroshot_logits(model, images[4:5], classifier).softmax(-1)[0]
    torch.testing.assert_close(app.probs, direct, atol=1e-6, rtol=1e-5)
    assert app.probs.argsort(descending=True).tolist() == direct.argsort(descending=True).tolist()
    assert app.prediction == app.classnames[int(direct.argmax())]
    assert app.caption.value == f"<b>{labels[4]}</b>"
    assert app.image.value[:8] == b"\x89PNG\r\n\x1a\n"


def test_prompt_app_bad_input_is_a_message(tiny):
    model, tokenizer, images, _ = tiny
    app = PromptClassifierApp(model, tokenizer, images)
    app.set_prompts(classnames=" , ")
    assert app.probs is None and "class name" in app.error and "class name" in app.status.value
    app.set_prompts(classnames="red circle", templates="no placeholder here")
    assert app.probs is None and "{}" in app.error
    app.set_prompts(templates="a {}.")
    assert app.error is None and app.probs.tolist() == [pytest.approx(1.0)]


def test_prompt_app_preprocess_is_used(tiny):
    model, tokenizer, images, _ = tiny
    seen = []

    def preprocess(batch):  # what a real CLIP's pipeline would be: uint8 -> normalised floats at its size
        seen.append(batch.shape)
        return torch.zeros(len(batch), 3, 32, 32)

    app = PromptClassifierApp(model, tokenizer, images, preprocess=preprocess)
    assert seen == [(1, 32, 32, 3)] and app.probs.sum().item() == pytest.approx(1.0, abs=1e-5)


def test_image_search_app(tiny):
    model, tokenizer, images, _ = tiny
    app = ImageSearchApp(model, tokenizer, images, query="a red circle", k=3)
    assert app.indices.shape == (3,) and app.scores.shape == (3,)
    assert (app.scores[:-1] >= app.scores[1:]).all()  # best first
    first = app.indices.clone()
    app.query_box.value = "four purple hearts"
    app.k_slider.value = 5
    app.update()
    assert app.query == "four purple hearts" and app.indices.shape == (5,)
    text = torch.nn.functional.normalize(model.encode_text(tokenizer.encode(["four purple hearts"])), dim=-1)
    cosines = (app.image_features @ text.t())[:, 0]
    assert app.indices.tolist() == cosines.topk(5).indices.tolist()
    torch.testing.assert_close(app.scores, cosines.topk(5).values, atol=1e-5, rtol=1e-4)
    assert app.indices.tolist() != first.tolist() or app.indices.shape != first.shape
    app.query_box.value = "   "
    app.update()
    assert app.indices is None and app.error and app.results.children == ()


def test_image_search_app_shows_ten_results_as_wrapping_tiles(tiny):
    model, tokenizer, images, labels = tiny
    labels = [f"<b>{name}</b>" for name in labels]  # a label is text, never markup
    app = ImageSearchApp(model, tokenizer, images, query="a red circle", k=10, labels=labels)
    tiles = app.results.children
    assert len(tiles) == 10 and all("miniclip-result" in t._dom_classes for t in tiles)
    assert app.results.layout.flex_flow == "row wrap"  # as many to a row as fit: k = 10 never overflows
    for rank, (tile, i, s) in enumerate(zip(tiles, app.indices.tolist(), app.scores.tolist()), start=1):
        picture, text = tile.children
        assert picture.value[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"#{rank}</b> cosine {s:.3f}" in text.value and f"image {i}<br>" in text.value
        assert f"&lt;b&gt;{labels[i][3:-4]}&lt;/b&gt;" in text.value
    app.k_slider.value = 2
    app.update()
    assert len(app.results.children) == 2
    with pytest.raises(ValueError, match="labels"):
        ImageSearchApp(model, tokenizer, images, labels=labels[:3])


def test_prompt_app_with_a_transformers_clip(tiny, tmp_path):
    """The app on a model that went through transformers (as OpenAI's CLIP does), with that model's preprocessing."""
    from miniclip.hf import from_transformers, to_transformers  # imports transformers: heavy and optional

    _, tokenizer, images, _ = tiny
    torch.manual_seed(1)
    plain = MiniCLIP(CLIPConfig.preset("shapes-tiny", stem_channels=(), eot_token_id=tokenizer.end_id,
                                       vocab_size=tokenizer.vocab_size)).eval()
    clip, clip_tokenizer = from_transformers(to_transformers(plain, tokenizer, tmp_path / "export"))
    preprocess = lambda batch: clip_tokenizer.image_transform([Image.fromarray(x) for x in batch])  # noqa: E731
    app = PromptClassifierApp(clip, clip_tokenizer, images, classnames="red circle, blue star, green heart",
                              preprocess=preprocess)
    assert app.probs.shape == (3,) and app.probs.sum().item() == pytest.approx(1.0, abs=1e-5)
    direct = PromptClassifierApp(plain, tokenizer, images, classnames="red circle, blue star, green heart")
    torch.testing.assert_close(app.probs, direct.probs, atol=1e-4, rtol=1e-3)  # the same function, both ways
    search = ImageSearchApp(clip, clip_tokenizer, images, query="a red circle", k=3, preprocess=preprocess)
    assert search.indices.shape == (3,)


def test_an_app_on_a_cells_last_line_shows_its_widget(tiny):
    """Jupyter shows `app` (a cell's last line) as the widget itself, with ipywidgets 7 (Colab) as with 8."""
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.display import display
    from IPython.utils.capture import capture_output

    model, tokenizer, images, _ = tiny
    app = PromptClassifierApp(model, tokenizer, images[:2], classnames="red circle, blue star")
    InteractiveShell.instance()  # display() outside a shell only prints repr(app)
    with capture_output() as shown:
        display(app)
    views = [o.data.get("application/vnd.jupyter.widget-view+json") for o in shown.outputs]
    assert [v["model_id"] for v in views if v] == [app.widget.model_id]
