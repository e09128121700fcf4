"""Seeded synthetic embeddings shaped like real ones: clustered, low intrinsic
dimension (a latent space projected up), small isotropic noise. No download."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def clustered(
    n: int,
    dim: int,
    *,
    clusters: int = 256,
    latent: int = 24,
    spread: float = 0.6,
    noise: float = 0.05,
    seed: int = 7,
    sample_seed: int | None = None,
) -> npt.NDArray[np.float32]:
    """`n` vectors of the space that `seed` defines. The same seed always gives
    the same space; another `sample_seed` draws other points (queries) from it."""
    space = np.random.default_rng(seed)
    projection = space.normal(size=(latent, dim)) / np.sqrt(latent)
    centres = space.normal(size=(clusters, latent))
    sizes = space.zipf(1.6, size=clusters).astype(np.float64)
    rng = np.random.default_rng(seed if sample_seed is None else sample_seed)
    which = rng.choice(clusters, size=n, p=sizes / sizes.sum())
    z = centres[which] + spread * rng.normal(size=(n, latent))
    out = z @ projection + noise * rng.normal(size=(n, dim))
    return np.ascontiguousarray(out, dtype=np.float32)


# Queries read better as a sample of the space than as a new cluster set.
sample = clustered
