"""Post-hoc isotropy transforms of a cloud x: [n, d]: centring, removing the top principal components
("all-but-the-top", Mu & Viswanath 2018) and whitening (PCA or ZCA), the natural causal test on a pre-trained
model's states: make them more isotropic without retraining, and see what moves.

In the style of optax: each transform is a `Transform`, a pair of pure functions `fit(x) -> state` and
`transform(state, x) -> y`; the state is a frozen pytree (a NamedTuple of arrays), so it can be saved, passed
through `jax.jit`, and applied to other rows of the same d (fit on one set of states, transform another).
`chain(...)` composes transforms. Eager calls validate their input (ValueError naming the argument and its
shape); `jax.jit(t.fit)` and `jax.jit(t.transform)` work as they are.

    t = transforms.all_but_the_top(2)
    state = t.fit(x)            # AllButTheTopState(mean [d], components [2, d])
    y = t.transform(state, x)   # [n, d]

Principal directions are computed on the cloud rescaled by a power of two (see `isojax.isotropy._cloud`),
so extreme magnitudes neither overflow nor underflow; their signs follow scikit-learn's rule (the largest
|entry| of each direction is positive), so a state is deterministic.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from isojax import _validate as V
from isojax.isotropy import _cloud as C

__all__ = ["AllButTheTopState", "CentreState", "Transform", "WhitenState", "all_but_the_top", "centre", "chain",
           "fit_transform", "whiten"]

WHITEN_KINDS = ("zca", "pca")


class Transform(NamedTuple):
    """A post-hoc transform: fit(x [n, d]) -> state, transform(state, x [m, d]) -> [m, d]."""

    fit: Callable[[ArrayLike], Any]
    transform: Callable[[Any, ArrayLike], jax.Array]


class CentreState(NamedTuple):
    """What `centre` learns: the mean row."""

    mean: jax.Array  # [d]


class AllButTheTopState(NamedTuple):
    """What `all_but_the_top` learns: the mean row and the top principal directions, largest first."""

    mean: jax.Array  # [d]
    components: jax.Array  # [D, d], orthonormal rows


class WhitenState(NamedTuple):
    """What `whiten` learns: y = (x - mean) @ matrix has (near) identity covariance on the fitted rows."""

    mean: jax.Array  # [d]
    matrix: jax.Array  # [d, d]


def _fit_input(x) -> jax.Array:
    x = C.cloud(x, "x")
    C.refuse_point_mass(x, what="a principal direction")
    return x


def _apply_input(x, mean) -> jax.Array:
    x = V.array("x", x, ndim=2, what="[m, d]", upcast_low=True)
    V.same_size("x", x.shape[1], "the fitted state", mean.shape[-1], "the dimension d")
    return x


def _times_power_of_two(a, e) -> jax.Array:
    """a · 2^e, exactly, in two half steps (2^e itself may not be representable)."""
    one = jnp.ones((), a.dtype)
    return (a * jnp.ldexp(one, e // 2)) * jnp.ldexp(one, e - e // 2)


def _mean(x) -> jax.Array:
    """The mean row, summed at a safe scale (n rows of 1e37 would overflow float32). [n, d] -> [d]"""
    return _times_power_of_two(C.rescaled(x).mean(axis=0), C.scale_exponent(x))


def _principal(x) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(mean [d], eigenvalues [d] largest first, directions [d, d] as rows) of a validated cloud's
    covariance; the eigenvalues belong to the cloud rescaled by 2^-e and are returned with e."""
    mean = _mean(x)
    xs = C.rescaled(x)
    centred = xs - xs.mean(axis=0)
    lam, vecs = jnp.linalg.eigh(centred.T @ centred / (x.shape[0] - 1))
    lam, vecs = jnp.maximum(lam[::-1], 0.0), vecs[:, ::-1].T  # largest first, one direction per row
    # scikit-learn's sign rule (svd_flip): the largest |entry| of each direction is positive
    big = jnp.take_along_axis(vecs, jnp.argmax(jnp.abs(vecs), axis=1)[:, None], axis=1)
    return mean, lam, vecs * jnp.where(big < 0, -1.0, 1.0).astype(vecs.dtype)


def centre() -> Transform:
    """Subtract the mean row: fit(x) -> CentreState(mean), transform(state, x) = x - mean. [n, d] -> [n, d]"""

    def fit(x: ArrayLike) -> CentreState:
        x = C.cloud(x, "x", min_points=1)
        return CentreState(_mean(x))

    def transform(state: CentreState, x: ArrayLike) -> jax.Array:
        return _apply_input(x, state.mean) - state.mean

    return Transform(fit, transform)


def all_but_the_top(components: int) -> Transform:
    """All-but-the-top (Mu & Viswanath 2018): subtract the mean, then the projections on the top `components`
    principal directions of the centred fitted cloud. y = (x - μ) - (x - μ) Uᵀ U, U: [D, d]. [n, d] -> [n, d]

    components = 0 is centring alone. fit raises ValueError unless 0 <= components < min(n, d) (beyond the
    rank the directions are arbitrary), and for a point mass (no direction to remove)."""
    components = V.positive_int("components", components, 0)

    def fit(x: ArrayLike) -> AllButTheTopState:
        x = _fit_input(x)
        if components >= min(x.shape):
            raise ValueError(f"components must be smaller than both n and d of x, got {components} for x of shape "
                             f"{tuple(x.shape)}")
        mean, _, vecs = _principal(x)
        return AllButTheTopState(mean, vecs[:components])

    def transform(state: AllButTheTopState, x: ArrayLike) -> jax.Array:
        centred = _apply_input(x, state.mean) - state.mean
        return centred - (centred @ state.components.T) @ state.components

    return Transform(fit, transform)


def whiten(kind: str = "zca", eps: float = 1e-6) -> Transform:
    """Whitening: y = (x - μ) W with covariance (near) identity on the fitted rows. [n, d] -> [n, d]

    kind "pca": W = V diag(λ + ε)^-1/2, coordinates along the principal directions, largest variance first;
    "zca": W = V diag(λ + ε)^-1/2 Vᵀ, the symmetric whitening, closest to x (Bell & Sejnowski's zero-phase
    filter). ε = eps · mean(λ), relative so the transform is scale-invariant: directions with no variance
    (n <= d, or a degenerate cloud) are scaled by at most 1/sqrt(ε) instead of infinitely. The two kinds differ
    by a rotation, so every rotation-invariant measure (all of isojax's) gives them the same value."""
    if kind not in WHITEN_KINDS:
        raise ValueError(f"kind must be one of {list(WHITEN_KINDS)}, got {kind!r}")
    V.real_in("eps", eps, 0.0, 1.0)
    if not eps > 0:
        raise ValueError(f"eps must be positive (it bounds the gain of directions without variance), got {eps!r}")

    def fit(x: ArrayLike) -> WhitenState:
        x = _fit_input(x)
        mean, lam, vecs = _principal(x)
        gain = jax.lax.rsqrt(lam + eps * jnp.mean(lam))  # for the rescaled cloud x·2^-e
        matrix = vecs.T * gain[None, :]  # [d, d]: column j = direction j / sqrt(λ_j + ε)
        if kind == "zca":
            matrix = matrix @ vecs
        # back to x's own scale: W(x) = W(x·2^-e)·2^-e
        return WhitenState(mean, _times_power_of_two(matrix, -C.scale_exponent(x)))

    def transform(state: WhitenState, x: ArrayLike) -> jax.Array:
        return (_apply_input(x, state.mean) - state.mean) @ state.matrix

    return Transform(fit, transform)


def chain(*transforms: Transform) -> Transform:
    """Transforms applied one after another: fit fits each on the previous one's output -> a tuple of states."""
    if not transforms or not all(isinstance(t, Transform) for t in transforms):
        raise ValueError(f"chain needs one or more Transform, got {transforms!r}")

    def fit(x: ArrayLike) -> tuple:
        states = []
        for t in transforms:
            state = t.fit(x)
            x = t.transform(state, x)
            states.append(state)
        return tuple(states)

    def transform(states: tuple, x: ArrayLike) -> jax.Array:
        if not isinstance(states, tuple) or len(states) != len(transforms):
            raise ValueError(f"states must be the tuple of {len(transforms)} states this chain's fit returns")
        for t, state in zip(transforms, states, strict=True):
            x = t.transform(state, x)
        return x

    return Transform(fit, transform)


def fit_transform(t: Transform, x: ArrayLike) -> tuple[Any, jax.Array]:
    """(state, y): fit t on x and transform x with it. [n, d] -> (state, [n, d])"""
    state = t.fit(x)
    return state, t.transform(state, x)
