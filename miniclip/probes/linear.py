"""Baselines the probes compare CLIP with: logistic-regression probes on frozen features, and k-shot subsets.

    linear_probe(train_features, train_labels, test_features, test_labels)    # accuracy, 0..1
    few_shot_curve(train_features, train_labels, test_features, test_labels)  # {k: (mean, std)}
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def fit_logistic_regression(features, labels, C: float = 0.316, max_iter: int = 1000, num_classes: int | None = None,
                            init=None, init_inverse_temperature: float = 100.0, device="cpu"):
    """Multinomial logistic regression with an L2 penalty, fitted with L-BFGS in float64; deterministic on the CPU.

    features [N, D], labels int64 [N] -> (W [K, D], b [K]) float64, with predictions argmax(features @ W.T + b).
    Minimises  sum_i CE(W x_i + b, y_i) + 1 / (2C) * ||W - W0||^2,  sklearn's LogisticRegression(C=C) objective
    (its penalty, too, leaves the bias out). C is the inverse strength of the penalty: small C, strong pull.

    init: optional zero-shot classifier [D, K] (zeroshot_classifier). W0 = init_inverse_temperature * init.T,
        the zero-shot logits (init_inverse_temperature is the model's 1 / T, model.inverse_temperature()), is then
        both the starting point and the centre of the penalty: the paper's idea of using the zero-shot classifier
        as a prior for few-shot training. Without init, W0 = 0 (plain sklearn). The problem is convex, so a
        starting point alone would change nothing.
    device: where to fit ("cuda" helps for 50k x 512 features; the result is returned on the CPU).
    """
    x = torch.as_tensor(features).detach().to(device, torch.float64)
    y = torch.as_tensor(labels).to(device, torch.long)
    n, d = x.shape
    if num_classes is None:
        num_classes = init.shape[1] if init is not None else int(y.max()) + 1
    W0 = torch.zeros(num_classes, d, dtype=torch.float64, device=device)
    if init is not None:
        init = torch.as_tensor(init).detach().to(device, torch.float64)
        if init.shape != (d, num_classes):
            raise ValueError(f"init must be a classifier [D, K] = [{d}, {num_classes}], got {list(init.shape)}")
        W0 = init_inverse_temperature * init.t()
    W = W0.clone().requires_grad_(True)
    b = torch.zeros(num_classes, dtype=torch.float64, device=device, requires_grad=True)
    # The objective divided by N: the same minimiser, and L-BFGS's tolerances do not depend on N.
    penalty = 1.0 / (2.0 * C * n)
    optimizer = torch.optim.LBFGS([W, b], lr=1.0, max_iter=max_iter, tolerance_grad=1e-9, tolerance_change=1e-12,
                                  history_size=20, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ W.t() + b, y) + penalty * (W - W0).pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return W.detach().cpu(), b.detach().cpu()


def linear_probe(train_features, train_labels, test_features, test_labels, C: float = 0.316, max_iter: int = 1000,
                 init=None, init_inverse_temperature: float = 100.0, num_classes: int | None = None,
                 device="cpu") -> float:
    """Fit logistic regression on train features [N, D] / labels [N]; return test accuracy (0..1).

    C = 0.316 is what OpenAI's README uses. init (a zero-shot classifier [D, K]) starts the probe at, and pulls
    it towards, the zero-shot solution; see fit_logistic_regression. Features should be the unit-length image
    features of encode_images, so that init gives the zero-shot logits.
    """
    if num_classes is None and init is None:
        num_classes = int(max(torch.as_tensor(train_labels).max(), torch.as_tensor(test_labels).max())) + 1
    W, b = fit_logistic_regression(train_features, train_labels, C=C, max_iter=max_iter, num_classes=num_classes,
                                   init=init, init_inverse_temperature=init_inverse_temperature, device=device)
    x = torch.as_tensor(test_features).detach().to("cpu", torch.float64)
    y = torch.as_tensor(test_labels).to("cpu", torch.long)
    return ((x @ W.t() + b).argmax(dim=1) == y).double().mean().item()


def k_shot_indices(labels, k: int, seed: int = 0) -> torch.Tensor:
    """k random examples of every class in labels [N] -> LongTensor [K * k], class by class, seeded.

    Raises ValueError when a class has fewer than k examples.
    """
    labels = torch.as_tensor(labels).to("cpu", torch.long)
    g = torch.Generator().manual_seed(seed)
    chosen = []
    for c in torch.unique(labels).tolist():  # sorted classes
        members = torch.nonzero(labels == c).flatten()
        if len(members) < k:
            raise ValueError(f"class {c} has only {len(members)} examples, fewer than k = {k}")
        chosen.append(members[torch.randperm(len(members), generator=g)[:k]].sort().values)
    return torch.cat(chosen)


def few_shot_curve(train_features, train_labels, test_features, test_labels, ks=(1, 2, 4, 8, 16), seeds=(0, 1, 2),
                   C: float = 0.316, max_iter: int = 1000, init=None, init_inverse_temperature: float = 100.0,
                   device="cpu") -> dict:
    """Linear-probe accuracy with k labelled examples per class -> {k: (mean, std)} over seeds (0..1).

    The std is the sample standard deviation over seeds (0 for a single seed). Pass init (a zero-shot
    classifier [D, K]) for probes that start from, and are pulled towards, the zero-shot solution.
    """
    train_features = torch.as_tensor(train_features)
    train_labels = torch.as_tensor(train_labels)
    num_classes = init.shape[1] if init is not None else int(
        max(train_labels.max(), torch.as_tensor(test_labels).max())) + 1
    curve = {}
    for k in ks:
        accs = []
        for seed in seeds:
            idx = k_shot_indices(train_labels, k, seed)
            accs.append(linear_probe(train_features[idx], train_labels[idx], test_features, test_labels, C=C,
                                     max_iter=max_iter, init=init, init_inverse_temperature=init_inverse_temperature,
                                     num_classes=num_classes, device=device))
        accs = np.array(accs)
        curve[k] = (float(accs.mean()), float(accs.std(ddof=1)) if len(accs) > 1 else 0.0)
    return curve
