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
) -> npt.NDArray[np.float32]:
    """Vectors from `seed`; the same seed always gives the same space, so
    queries drawn with `seed` and another `sample_seed` share its structure."""
    return sample(
        n,
        dim,
        clusters=clusters,
        latent=latent,
        spread=spread,
        noise=noise,
        seed=seed,
        sample_seed=seed,
    )


def sample(
    n: int,
    dim: int,
    *,
    clusters: int = 256,
    latent: int = 24,
    spread: float = 0.6,
    noise: float = 0.05,
    seed: int = 7,
    sample_seed: int = 8,
) -> npt.NDArray[np.float32]:
    space = np.random.default_rng(seed)
    projection = space.normal(size=(latent, dim)) / np.sqrt(latent)
    centres = space.normal(size=(clusters, latent))
    sizes = space.zipf(1.6, size=clusters).astype(np.float64)
    rng = np.random.default_rng(sample_seed)
    which = rng.choice(clusters, size=n, p=sizes / sizes.sum())
    z = centres[which] + spread * rng.normal(size=(n, latent))
    out = z @ projection + noise * rng.normal(size=(n, dim))
    return np.ascontiguousarray(out, dtype=np.float32)
