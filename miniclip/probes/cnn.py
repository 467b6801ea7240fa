"""A supervised baseline: a small CNN trained on the labels of the 36 shapes classes (limitations 1 and 3).

    cnn = train_shapes_cnn(train_per_class=50, steps=300)      # ~7 s of one CPU core, ~96% on normal images
    predicted = cnn_predict(cnn, images)                       # class indices [N], as shapes.class_names()

It sees labels, never a caption: the "supervised model" of effective robustness. The other baseline, logistic
regression on CLIP's frozen features, is in miniclip.probes.linear.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from miniclip.config import TrainConfig
from miniclip.data import shapes
from miniclip.device import seed_everything
from miniclip.encode import prepare_images
from miniclip.probes.scoring import probe_data_seed
from miniclip.train import lr_at


class TinyCNN(nn.Module):
    """Three 3x3 convolutions (16, 32, 64 channels; the last two stride 2), max pooling, a linear layer.

    grid = 1 (the default) pools globally: max pooling asks "is this pattern anywhere in the image?", which suits
    objects at random positions (with average pooling the same network learns shapes far more slowly), and throws
    away *where*. grid = 2 keeps the maximum of each quarter of the image, so the head can also tell where.
    """

    def __init__(self, num_classes: int, channels=(16, 32, 64), grid: int = 1):
        super().__init__()
        layers, c_in = [], 3
        for i, c in enumerate(channels):
            layers += [nn.Conv2d(c_in, c, 3, stride=1 if i == 0 else 2, padding=1), nn.BatchNorm2d(c), nn.GELU()]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.grid = grid
        self.head = nn.Linear(c_in * grid * grid, num_classes)
        self.image_size = 32

    def forward(self, x):
        """x [B, 3, 32, 32], normalised -> logits [B, K]."""
        pooled = F.adaptive_max_pool2d(self.features(x), self.grid)  # max per cell: [B, 64, grid, grid]
        return self.head(pooled.flatten(1))  # [B, 64 * grid * grid] -> [B, K]


def train_supervised_cnn(images, labels, num_classes: int, steps: int = 300, batch_size: int = 64,
                         lr: float = 5e-3, seed: int = 0, grid: int = 1) -> TinyCNN:
    """Train a TinyCNN with cross-entropy on labelled images (uint8 [N, S, S, 3], labels [N]); seeded, CPU.

    AdamW with miniclip.train's cosine schedule (lr_at, here without warmup): lr at step 0, 0 at `steps`.
    grid: the TinyCNN's pooling grid (1: what, anywhere; 2: also where).
    Seeding goes through seed_everything, which also reseeds Python's and numpy's global generators.
    """
    schedule = TrainConfig(steps=steps, lr=lr, warmup_steps=0)  # only what lr_at reads
    with torch.random.fork_rng(devices=[]):  # leave the caller's torch random state alone
        seed_everything(seed)
        model = TinyCNN(num_classes, grid=grid)
        x = prepare_images(images, model.image_size)  # [N, 3, 32, 32]
        y = torch.as_tensor(labels, dtype=torch.long)
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
        g = torch.Generator().manual_seed(seed)
        model.train()
        for step in range(steps):
            idx = torch.randint(len(x), (min(batch_size, len(x)),), generator=g)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, schedule)
            loss = F.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


@torch.no_grad()
def cnn_predict(cnn: TinyCNN, images, batch_size: int = 512) -> torch.Tensor:
    """Predicted class indices [N] of a TinyCNN on uint8 images [N, S, S, 3]."""
    return torch.cat([cnn(prepare_images(images[i:i + batch_size], cnn.image_size)).argmax(dim=1)
                      for i in range(0, len(images), batch_size)])


def labelled_shapes(train_per_class: int = 50, seed: int = 0, image_size: int = 32):
    """The labelled training set of the supervised baselines: (images uint8 [36 * n, S, S, 3], labels [36 * n])."""
    data, labels = shapes.single_object_set(train_per_class, seed=probe_data_seed(seed, 1), image_size=image_size)
    return data.images, labels


def train_shapes_cnn(train_per_class: int = 50, steps: int = 300, seed: int = 0, image_size: int = 32) -> TinyCNN:
    """A TinyCNN trained on labelled_shapes: 300 steps on 50 images per class reach ~96% on normal images."""
    images, labels = labelled_shapes(train_per_class, seed, image_size)
    return train_supervised_cnn(images, labels, len(shapes.class_names()), steps=steps, seed=seed)
