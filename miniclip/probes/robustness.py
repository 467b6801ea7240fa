"""Limitations 1 and 3: zero-shot CLIP is below supervised models on their own task, generalises poorly to truly
out-of-distribution data, and reads the words written on an image (the typographic attack).

    supervised_vs_zeroshot(model, tokenizer)     # zero-shot vs linear probe vs supervised CNN, normal images
    distribution_shift(model, tokenizer)         # the same three on every rendition (sketch, texture, ...)
    typographic(model, tokenizer)["flip_rate"]   # how often a written word changes the prediction
"""
from __future__ import annotations

import torch

from miniclip.data import shapes
from miniclip.data.shapes import RENDITIONS, SHAPES, class_names
from miniclip.encode import encode_images
from miniclip.probes.cnn import TinyCNN, cnn_predict, labelled_shapes, train_shapes_cnn
from miniclip.probes.linear import fit_logistic_regression
from miniclip.probes.scoring import average, classify, probe_data_seed
from miniclip.zeroshot import SHAPES_TEMPLATES, zeroshot_classifier


def supervised_vs_zeroshot(model, tokenizer, per_class: int = 20, train_per_class: int = 50, cnn_steps: int = 300,
                           seed: int = 0, cnn: TinyCNN | None = None) -> dict:
    """Zero-shot top-1 against supervised classifiers trained on labelled images of the same 36 classes.

    The paper: zero-shot CLIP is competitive with a linear classifier on ResNet-50 features, but well below the
    state of the art of most tasks. Here the supervised side is (a) logistic regression on the model's own
    frozen features of `train_per_class` labelled images per class (the "linear probe") and (b) a TinyCNN
    trained on the same labelled images (`cnn_steps` steps, unless a trained `cnn` is given). Returns
    accuracies (0..1) on a held-out single-object set of `per_class` images per class.
    """
    size = model.config.image_size
    test, test_labels = shapes.single_object_set(per_class, seed=probe_data_seed(seed, 2), image_size=size)
    train_images, train_labels = labelled_shapes(train_per_class, seed, size)
    classifier = zeroshot_classifier(model, tokenizer, class_names(), SHAPES_TEMPLATES)
    test_features = encode_images(model, test.images)
    W, b = fit_logistic_regression(encode_images(model, train_images), train_labels, num_classes=len(class_names()))
    cnn = cnn if cnn is not None else train_shapes_cnn(train_per_class, cnn_steps, seed, size)
    labels = torch.as_tensor(test_labels)
    return {
        "zero_shot": average(classify(test_features, classifier) == labels),
        "linear_probe": average(((test_features.cpu().double() @ W.t() + b).argmax(dim=1) == labels)),
        "supervised_cnn": average(cnn_predict(cnn, test.images) == labels),
        "n_train_per_class": train_per_class,
        "n_test": len(labels),
        "chance": 1 / len(class_names()),
    }


def distribution_shift(model, tokenizer, per_class: int = 20, train_per_class: int = 50, cnn_steps: int = 300,
                       seed: int = 0, cnn: TinyCNN | None = None) -> dict:
    """Top-1 on the 36 classes for every rendition (normal, sketch, texture, shade, background), three ways:

      zero_shot       the model's zero-shot classifier (prompt ensemble of SHAPES_TEMPLATES)
      linear_probe    logistic regression on the model's features, fitted on normal images only
      supervised_cnn  a TinyCNN trained on the labels of the same normal images
    Each is {rendition: accuracy} on `per_class` images per class; the supervised side trains as in
    supervised_vs_zeroshot. "Effective robustness" (the paper, section 3.3) compares accuracy under shift with
    in-distribution accuracy: plot shifted against normal for each method. The paper: zero-shot CLIP is far more
    robust than supervised ImageNet models on natural shifts, yet fails on truly out-of-distribution data
    (MNIST: 88%).
    """
    size = model.config.image_size
    classifier = zeroshot_classifier(model, tokenizer, class_names(), SHAPES_TEMPLATES)
    train_images, train_labels = labelled_shapes(train_per_class, seed, size)
    W, b = fit_logistic_regression(encode_images(model, train_images), train_labels, num_classes=len(class_names()))
    cnn = cnn if cnn is not None else train_shapes_cnn(train_per_class, cnn_steps, seed, size)
    out = {"zero_shot": {}, "linear_probe": {}, "supervised_cnn": {}}
    for rendition in RENDITIONS:
        data, labels = shapes.single_object_set(per_class, seed=probe_data_seed(seed, 3), image_size=size,
                                                rendition=rendition)
        labels = torch.as_tensor(labels)
        features = encode_images(model, data.images).cpu()
        out["zero_shot"][rendition] = average(classify(features, classifier) == labels)
        out["linear_probe"][rendition] = average((features.double() @ W.t() + b).argmax(dim=1) == labels)
        out["supervised_cnn"][rendition] = average(cnn_predict(cnn, data.images) == labels)
    shifted = [r for r in RENDITIONS if r != "normal"]
    for method in ("zero_shot", "linear_probe", "supervised_cnn"):
        out[f"{method}_shifted_mean"] = average([out[method][r] for r in shifted])
    return out | {"n_per_rendition": len(labels), "chance": 1 / len(class_names())}


def typographic(model, tokenizer, per_class: int = 20, seed: int = 0, word: str = "wrong") -> dict:
    """The typographic attack: write another shape's name on the image and classify zero-shot again.

    The paper (and the follow-up "Multimodal neurons"): CLIP reads, so an apple labelled "iPod" becomes an iPod.
    The same `per_class` images per class are classified without and with the word (single_object_set keeps
    everything else equal):
      accuracy_clean, accuracy_attacked   top-1 on the 36 "colour shape" classes
      flip_rate          of the images right without the word, the share whose prediction changes with it
      follows_word_rate  the share of attacked images predicted as the written shape (chance 1/6 by shape)
    word: "wrong" (another shape, drawn per image) or "true" (the object's own shape: reading then helps).
    """
    size = model.config.image_size
    classifier = zeroshot_classifier(model, tokenizer, class_names(), SHAPES_TEMPLATES)
    clean, labels = shapes.single_object_set(per_class, seed=probe_data_seed(seed, 4), image_size=size)
    attacked, _ = shapes.single_object_set(per_class, seed=probe_data_seed(seed, 4), image_size=size, word=word)
    labels = torch.as_tensor(labels)
    before = classify(encode_images(model, clean.images), classifier)
    after = classify(encode_images(model, attacked.images), classifier)
    right = before == labels
    written = torch.tensor([SHAPES.index(a["word"]) for a in attacked.attributes])
    predicted_shape = after % len(SHAPES)  # class_names() is colour-major: index = colour * 6 + shape
    return {
        "accuracy_clean": average(right),
        "accuracy_attacked": average(after == labels),
        "flip_rate": average((after != before)[right]),
        "follows_word_rate": average(predicted_shape == written),
        "follows_word_given_flip": average((predicted_shape == written)[right & (after != before)]),
        "chance_follows_word": 1 / len(SHAPES),
        "n": len(labels),
        "chance": 1 / len(class_names()),
    }
