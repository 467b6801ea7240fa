import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from miniclip.course import figures as viz  # noqa: E402

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
CAPTIONS = ["a red circle", "two blue stars to the left of a very long caption that must wrap", "a green square"]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def labelled(fig, need_axis_labels=True):
    """Some title on the figure, and every axes with data has a title or axis labels."""
    texts = [fig._suptitle.get_text()] if fig._suptitle is not None else []
    plotted = [ax for ax in fig.axes if ax.get_label() != "<colorbar>" and (ax.lines or ax.images or ax.patches)]
    assert plotted, "nothing was drawn"
    texts += [ax.get_title() for ax in plotted]
    assert any(t.strip() for t in texts)
    if need_axis_labels:
        for ax in plotted:
            assert ax.get_xlabel() and ax.get_ylabel(), ax
    return True


def test_show_pairs():
    fig = viz.show_pairs(IMAGES, CAPTIONS, ncols=2)
    assert isinstance(fig, plt.Figure) and labelled(fig, need_axis_labels=False)
    assert len([ax for ax in fig.axes if ax.images]) == 3
    assert "\n" in fig.axes[1].get_title()  # the long caption is wrapped
    with pytest.raises(ValueError):
        viz.show_pairs(IMAGES, CAPTIONS[:2])


def test_plot_similarity():
    sim = torch.tensor([[0.3, 0.1, 0.0], [0.1, 0.25, 0.05], [0.0, 0.1, 0.28]])
    fig = viz.plot_similarity(sim, IMAGES, CAPTIONS, title="cosines")
    assert labelled(fig)
    ax = fig.axes[0]
    assert len(ax.images) == 1 + 3  # the heatmap and one thumbnail per row
    assert len(ax.texts) == 9  # values written in the cells
    assert any(a.get_label() == "<colorbar>" for a in fig.axes)
    big = viz.plot_similarity(RNG.random((12, 12)), RNG.integers(0, 256, (12, 8, 8, 3), dtype=np.uint8),
                              [f"caption {i}" for i in range(12)])
    assert len(big.axes[0].texts) == 0  # too many cells to annotate


def test_plot_history():
    # as miniclip.train logs it: training rows, and evaluation rows of val_* keys only
    history = [{"step": s, "loss": 4.0 / (s + 1), "temperature": 0.07, "logit_scale": 2.66 + s / 100, "lr": 1e-3,
                "pairs_per_s": 500.0} for s in range(0, 50, 5)]
    history.append({"step": 45, "val_loss": 0.5, "val_i2t_r1": 40.0, "val_zeroshot_top1": 0.8, "val_num_images": 1000})
    fig = viz.plot_history(history)
    assert labelled(fig) and len(fig.axes) == 3
    np.testing.assert_allclose(fig.axes[1].lines[0].get_ydata()[0], np.exp(2.66))  # 1 / T from ln(1 / T)
    assert len(fig.axes[0].lines) == 2  # train and validation loss
    labels = [line.get_label() for line in fig.axes[2].lines]
    assert labels == ["val_i2t_r1", "val_zeroshot_top1 (x100)"]  # no counts; fractions drawn as percent
    fig = viz.plot_history([{"step": 0, "loss": 4.1, "temperature": 0.07}, {"step": 1, "loss": 4.0, "temperature": 0.05}])
    assert labelled(fig) and len(fig.axes) == 2
    np.testing.assert_allclose(fig.axes[1].lines[0].get_ydata(), [1 / 0.07, 20.0])


def test_plot_confusion_and_probabilities():
    names = ["red circle", "blue star", "green square"]
    fig = viz.plot_confusion(torch.tensor([[5, 1, 0], [0, 6, 0], [2, 0, 4]]), names)
    assert labelled(fig)
    fig = viz.plot_probabilities(torch.tensor([0.1, 0.7, 0.2]), names, title="an image")
    assert labelled(fig)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["blue star", "green square", "red circle"]  # sorted


def test_plot_retrieval_text_and_image_queries():
    fig = viz.plot_retrieval("a red circle", IMAGES, [0.31, 0.2, 0.1])
    assert labelled(fig, need_axis_labels=False) and "score 0.310" in fig.axes[1].get_title()
    fig = viz.plot_retrieval(IMAGES[0], CAPTIONS, torch.tensor([0.3, 0.2, 0.1]), title="image -> text")
    assert labelled(fig, need_axis_labels=False)


def test_plot_accuracy_curve():
    ks = [1, 2, 4, 8, 16]
    fig = viz.plot_accuracy_curve(ks, {"linear probe": [(0.3, 0.05), (0.45, 0.04), (0.6, 0.03), (0.7, 0.02), (0.8, 0.01)],
                                       "other": [0.2, 0.3, 0.4, 0.5, 0.6], "zero-shot": 0.55},
                                  chance=1 / 36, title="few-shot vs zero-shot", log_x=True)
    assert labelled(fig)
    assert len(fig.axes[0].lines) == 4  # two curves, the zero-shot line, the chance line


def test_save_figure(tmp_path):
    fig = viz.plot_accuracy_curve([1, 2], {"a": [0.1, 0.2]}, xlabel="k", ylabel="accuracy", title="t")
    path = viz.save_figure(fig, tmp_path / "sub" / "curve.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["curve.png"]  # no temporary file left behind
