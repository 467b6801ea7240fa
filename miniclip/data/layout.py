"""Where the objects of a shapes-world scene go: never touching, and relations that cannot be misread.

Positions and radii are fractions of the image side (x to the right, y down), so one layout fits every
image size; `margin` keeps objects that far from the border.
"""
from __future__ import annotations

import numpy as np

GAP = 0.06  # the least free space between two objects, as a fraction of the image side
ALIGN = 0.03  # related objects differ by at most 2 * ALIGN across the relation's axis


def place_related(rng: np.random.Generator, r_a: float, r_b: float, relation: str, margin: float):
    """Centres (x, y) of A and B with A `relation` B, clearly apart along one axis and aligned across it."""
    a_first = relation in ("to the left of", "above")  # A has the smaller coordinate along the axis
    r_first, r_second = (r_a, r_b) if a_first else (r_b, r_a)
    # along the axis: the first object's edge comes at least GAP before the second's
    lo, hi = r_first + margin, 1.0 - r_second - margin
    need = r_first + r_second + GAP
    slack = hi - lo - need
    if slack < 0:
        raise ValueError(f"objects of radius {r_a:.2f} and {r_b:.2f} do not fit side by side")
    u1, u2 = np.sort(rng.uniform(0.0, slack, 2))
    first, second = lo + u1, lo + need + u2
    along_a, along_b = (first, second) if a_first else (second, first)
    # across the axis: a common line, each object within ALIGN of it
    r_max = max(r_a, r_b)
    line = rng.uniform(r_max + margin + ALIGN, 1.0 - r_max - margin - ALIGN)
    across_a, across_b = line + rng.uniform(-ALIGN, ALIGN, 2)
    if relation in ("to the left of", "to the right of"):
        return (along_a, across_a), (along_b, across_b)
    return (across_a, along_a), (across_b, along_b)


def place_apart(rng: np.random.Generator, radii: list[float], margin: float, tries: int = 200):
    """Centres [(x, y)] for objects of the given radii that do not touch (at least GAP apart)."""
    for _ in range(tries):
        centres: list[tuple[float, float]] = []
        for r in radii:
            for _ in range(30):
                x, y = rng.uniform(r + margin, 1.0 - r - margin, 2).tolist()  # Python floats: faster arithmetic
                if all((x - cx) ** 2 + (y - cy) ** 2 >= (r + cr + GAP) ** 2 for (cx, cy), cr in zip(centres, radii)):
                    centres.append((x, y))
                    break
            else:
                break
        if len(centres) == len(radii):
            return centres
    raise ValueError(f"could not place {len(radii)} objects of radii {radii} apart")
