"""The study's Gaussian-process kernel bank: single-kernel families, two settings each, as in the study, and
KernelSynth-style compositions of a larger bank (Ansari et al. 2024, *Chronos*, Algorithm 2).

`sample(key, kernel, length)` draws one series [length] on inputs t = 0, 1/length, ... (the unit interval);
`vmap`-able over keys. `sample_many(key, kernel, count, length)` draws `count` series [count, length] with one
eigen-decomposition of the Gram matrix (cached per kernel, length and dtype), each series equal, bit for bit,
to `sample` on the same split key.

A kernel is named by a string: a bank entry (`BANK`, e.g. "rbf_1"), a composition of bank entries combined
left to right (`expression`, e.g. "(rbf_1+seasonality_24)*white_0.1"), or a name of the synthetic bank
(`SYNTH`, e.g. "ks_000"), whose composition `synth_kernel` draws by the KernelSynth procedure from a key
derived from the name alone, so adding names never changes another's kernel.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from isojax import _validate as V
from isojax.runs import keys

__all__ = ["INPUT", "HORIZON", "KERNELS", "BANK", "SYNTH", "SYNTH_SEED", "dot_product", "periodic",
           "rational_quadratic", "rbf", "white", "constant", "gram", "sample", "sample_many", "compose",
           "expression", "parse", "resolve", "synth_kernel", "synth_bank"]

INPUT, HORIZON = 500, 64


def dot_product(sigma0: float) -> Callable:
    """k(s, t) = σ0² + s t (broadcasts over s, t)."""
    return lambda s, t: sigma0**2 + s * t


def periodic(period: float, length_scale: float = 1.0) -> Callable:
    """k(s, t) = exp(-2 sin²(π |s - t| / period) / length_scale²) (broadcasts over s, t)."""
    return lambda s, t: jnp.exp(-2.0 * jnp.sin(jnp.pi * jnp.abs(s - t) / period) ** 2 / length_scale**2)


def rational_quadratic(alpha: float, length_scale: float = 0.3) -> Callable:
    """k(s, t) = (1 + (s - t)² / (2 α length_scale²))^(-α) (broadcasts over s, t)."""
    return lambda s, t: (1.0 + (s - t) ** 2 / (2.0 * alpha * length_scale**2)) ** (-alpha)


def rbf(length_scale: float) -> Callable:
    """k(s, t) = exp(-(s - t)² / (2 length_scale²)) (broadcasts over s, t)."""
    return lambda s, t: jnp.exp(-0.5 * (s - t) ** 2 / length_scale**2)


def white(noise: float) -> Callable:
    """k(s, t) = noise · [s == t] (broadcasts over s, t)."""
    return lambda s, t: noise * (s == t).astype(jnp.result_type(s))


def constant(value: float) -> Callable:
    """k(s, t) = value (broadcasts over s, t): a random level shared by the whole series."""
    return lambda s, t: value + 0.0 * (s + t)


# the study's ten single-kernel datasets (gp:<name>); periods are in steps of a 564-value series
KERNELS: dict[str, Callable] = {
    "dotproduct_0": dot_product(0.0),
    "dotproduct_1": dot_product(1.0),
    "seasonality_24": periodic(24.0 / 564),
    "seasonality_168": periodic(168.0 / 564),
    "rationalquadratic_1": rational_quadratic(1.0),
    "rationalquadratic_10": rational_quadratic(10.0),
    "rbf_0.1": rbf(0.1),
    "rbf_1": rbf(1.0),
    "white_0.1": white(0.1),
    "white_1": white(1.0),
}

# KernelSynth's bank (Chronos' kernel bank in this module's parametrisation): periodic kernels at the periods
# of hourly, daily, weekly, monthly, quarterly and yearly data (those no longer than the 564-value series),
# dot-product, RBF and rational-quadratic kernels at three settings, white noise and a constant. The synthetic
# datasets index this dict by position: append new entries at the end, never reorder or remove one.
_PERIODS = (4, 6, 7, 10, 12, 14, 24, 26, 30, 40, 48, 52, 60, 96, 168, 336, 365)
BANK: dict[str, Callable] = {
    **KERNELS,
    **{f"seasonality_{p}": periodic(p / 564) for p in _PERIODS if p not in (24, 168)},
    "dotproduct_10": dot_product(10.0),
    "rbf_10": rbf(10.0),
    "rationalquadratic_0.1": rational_quadratic(0.1),
    "constant_1": constant(1.0),
}

SYNTH_SEED = 2024  # the base key of the synthetic bank: named_key(PRNGKey(SYNTH_SEED), name) draws a composition
_MAX_KERNELS = 5  # KernelSynth's J: at most this many bank kernels per composition

# The synthetic datasets (gp:<name>): the first 96 names ks_000, ks_001, ... whose KernelSynth draw is a kernel
# new to the bank so far (its Gram matrix at 564 points, scaled to unit trace, differs by more than 1% from the
# ten single kernels' and every earlier name's: a series' law up to scale, which mean scaling removes) and not
# of rank 1 (a constant or a line through 0). Written out so the datasets can be read here; `synth_bank(96)` regenerates
# this table (a test checks it).
SYNTH: dict[str, str] = {
    "ks_000": "(((white_0.1+seasonality_40)*rationalquadratic_10)*dotproduct_10)+seasonality_7",
    "ks_001": "seasonality_40*seasonality_40",
    "ks_002": "((seasonality_4*seasonality_12)+seasonality_24)+rationalquadratic_10",
    "ks_003": "seasonality_168+seasonality_24",
    "ks_005": "seasonality_48*seasonality_48",
    "ks_006": "(((seasonality_48*seasonality_365)+dotproduct_1)*seasonality_24)*seasonality_168",
    "ks_007": "(rbf_0.1+seasonality_336)+dotproduct_1",
    "ks_009": "seasonality_6+seasonality_52",
    "ks_010": "(((white_1+dotproduct_10)*seasonality_4)*constant_1)*rbf_10",
    "ks_011": "(((seasonality_52+white_1)*seasonality_365)*seasonality_14)+dotproduct_0",
    "ks_012": "(((seasonality_10+rbf_1)+constant_1)*white_0.1)+rbf_1",
    "ks_013": "(seasonality_365*seasonality_52)*constant_1",
    "ks_014": "((dotproduct_1*white_0.1)+seasonality_365)+seasonality_48",
    "ks_015": "(seasonality_14*seasonality_4)+dotproduct_0",
    "ks_016": "(((rbf_0.1+seasonality_6)+dotproduct_10)*seasonality_48)+rbf_1",
    "ks_017": "(((seasonality_48+seasonality_40)+seasonality_12)*constant_1)+rbf_0.1",
    "ks_019": "((seasonality_96+constant_1)+white_1)*seasonality_96",
    "ks_021": "((seasonality_7+seasonality_96)+seasonality_365)*seasonality_365",
    "ks_022": "seasonality_40*seasonality_6",
    "ks_023": "(((seasonality_24+seasonality_26)+seasonality_10)+rationalquadratic_10)+rbf_1",
    "ks_025": "(((rbf_10+seasonality_10)*seasonality_7)*dotproduct_0)*seasonality_24",
    "ks_026": "(((seasonality_10+seasonality_40)*seasonality_336)+dotproduct_0)*constant_1",
    "ks_027": "(seasonality_30*seasonality_26)*seasonality_6",
    "ks_030": "constant_1*seasonality_30",
    "ks_031": "((rbf_10+seasonality_7)+white_1)*seasonality_365",
    "ks_032": "seasonality_60",
    "ks_033": "seasonality_365",
    "ks_034": "seasonality_96",
    "ks_035": "(((dotproduct_1+seasonality_168)+white_0.1)*seasonality_6)*seasonality_10",
    "ks_036": "(((white_1*dotproduct_10)+seasonality_40)+seasonality_168)+seasonality_26",
    "ks_037": "rbf_0.1*seasonality_48",
    "ks_038": "((seasonality_12*seasonality_30)*constant_1)+seasonality_7",
    "ks_040": "((seasonality_26+constant_1)*seasonality_12)+seasonality_365",
    "ks_041": "((seasonality_4*seasonality_26)+seasonality_12)+seasonality_48",
    "ks_042": "seasonality_14*constant_1",
    "ks_043": "(rbf_0.1*rationalquadratic_10)*seasonality_96",
    "ks_045": "(((seasonality_40+seasonality_60)+white_1)+dotproduct_0)+dotproduct_10",
    "ks_046": "(seasonality_12*seasonality_60)+dotproduct_0",
    "ks_048": "seasonality_7+seasonality_30",
    "ks_049": "constant_1+rationalquadratic_1",
    "ks_050": "(seasonality_6+rationalquadratic_0.1)+rationalquadratic_1",
    "ks_051": "(seasonality_48*rationalquadratic_10)+dotproduct_1",
    "ks_052": "((rbf_1+seasonality_365)+seasonality_4)*seasonality_6",
    "ks_053": "((rationalquadratic_0.1+seasonality_24)*seasonality_52)+rbf_10",
    "ks_054": "dotproduct_0*seasonality_14",
    "ks_056": "seasonality_7+rbf_1",
    "ks_057": "(((constant_1*rbf_10)+seasonality_60)+constant_1)*seasonality_4",
    "ks_058": "seasonality_12",
    "ks_059": "seasonality_52*constant_1",
    "ks_060": "((seasonality_4*seasonality_40)+seasonality_60)+rationalquadratic_1",
    "ks_061": "seasonality_26*dotproduct_1",
    "ks_063": "seasonality_7*rationalquadratic_0.1",
    "ks_064": "seasonality_60+seasonality_168",
    "ks_065": "dotproduct_1+seasonality_24",
    "ks_066": "((rationalquadratic_1+dotproduct_10)+dotproduct_10)*seasonality_40",
    "ks_067": "(((seasonality_12*dotproduct_10)+seasonality_30)*seasonality_365)+seasonality_6",
    "ks_068": "((seasonality_48*constant_1)*seasonality_168)+dotproduct_10",
    "ks_069": "(seasonality_10*dotproduct_1)*constant_1",
    "ks_070": "(((seasonality_48*rbf_1)+seasonality_14)+dotproduct_0)+seasonality_14",
    "ks_071": "((seasonality_168*seasonality_26)*white_0.1)+rbf_10",
    "ks_072": "rbf_1*seasonality_14",
    "ks_073": "(seasonality_10+rationalquadratic_10)+rationalquadratic_1",
    "ks_074": "seasonality_26",
    "ks_076": "seasonality_4*rbf_1",
    "ks_077": "seasonality_7+seasonality_336",
    "ks_078": "(((white_0.1+white_0.1)*seasonality_26)+dotproduct_0)+seasonality_30",
    "ks_080": "((dotproduct_0*rationalquadratic_1)*seasonality_24)+seasonality_6",
    "ks_081": "seasonality_24+seasonality_4",
    "ks_082": "(rbf_0.1*rationalquadratic_0.1)+rbf_0.1",
    "ks_083": "rbf_1*seasonality_7",
    "ks_084": "(rbf_0.1*seasonality_52)+rbf_1",
    "ks_085": "((seasonality_52+dotproduct_10)*seasonality_4)+rbf_10",
    "ks_090": "seasonality_336*seasonality_60",
    "ks_091": "((rationalquadratic_1+seasonality_96)+seasonality_7)*seasonality_4",
    "ks_092": "((seasonality_14*seasonality_26)*seasonality_60)+seasonality_30",
    "ks_093": "(seasonality_24+white_1)+seasonality_7",
    "ks_094": "seasonality_52*rationalquadratic_10",
    "ks_095": "(((rationalquadratic_1*seasonality_24)*seasonality_4)*seasonality_40)*rbf_10",
    "ks_096": "(((white_1+rationalquadratic_10)*seasonality_14)+seasonality_30)*seasonality_96",
    "ks_097": "(seasonality_7+seasonality_60)*seasonality_52",
    "ks_098": "(((dotproduct_10*seasonality_30)*dotproduct_0)*seasonality_30)*seasonality_7",
    "ks_100": "seasonality_48",
    "ks_102": "(((white_0.1*seasonality_48)+dotproduct_0)*rbf_0.1)+dotproduct_0",
    "ks_103": "(((dotproduct_0+seasonality_168)*rationalquadratic_1)+rationalquadratic_1)*rbf_1",
    "ks_105": "rbf_1+seasonality_12",
    "ks_108": "(((seasonality_52+seasonality_96)*rbf_1)*rationalquadratic_10)+seasonality_6",
    "ks_109": "rationalquadratic_10+seasonality_14",
    "ks_110": "rbf_0.1*seasonality_26",
    "ks_112": "((rbf_1*dotproduct_1)+seasonality_26)+seasonality_48",
    "ks_113": "(rbf_1+dotproduct_0)+seasonality_168",
    "ks_114": "((constant_1+seasonality_24)+seasonality_60)+seasonality_52",
    "ks_116": "dotproduct_1*rbf_0.1",
    "ks_117": "(((seasonality_96+seasonality_168)*seasonality_30)+seasonality_6)*dotproduct_10",
    "ks_119": "(((seasonality_10*dotproduct_10)*seasonality_12)*rationalquadratic_0.1)*seasonality_14",
    "ks_120": "(((seasonality_48+seasonality_96)*seasonality_4)*seasonality_26)*seasonality_365",
    "ks_123": "(seasonality_14*seasonality_14)*seasonality_96",
}


def gram(kernel: Callable, length: int) -> jax.Array:
    """K[i, j] = k(t_i, t_j) on t = i / length. -> [length, length]"""
    t = jnp.arange(length, dtype=V.float_dtype()) / length
    return kernel(t[:, None], t[None, :])


def expression(names: list[str], ops: list[str]) -> str:
    """The canonical name of a composition: bank names combined left to right, each step parenthesised,
    e.g. (["rbf_1", "seasonality_24", "white_0.1"], ["+", "*"]) -> "(rbf_1+seasonality_24)*white_0.1"."""
    _check_composition(names, ops)
    out = names[0]
    for i, (op, name) in enumerate(zip(ops, names[1:])):
        out = f"({out}){op}{name}" if i > 0 else f"{out}{op}{name}"
    return out


def parse(expr: str) -> tuple[list[str], list[str]]:
    """(names, ops) of a composition written as `expression` writes it (the only spelling accepted, so that
    "a+b*c" is never read with the usual precedence): "(rbf_1+seasonality_24)*white_0.1" ->
    (["rbf_1", "seasonality_24", "white_0.1"], ["+", "*"])."""
    if not isinstance(expr, str) or not expr:
        raise ValueError(f"a kernel expression must be a non-empty string, got {expr!r}")
    parts = re.split(r"([+*])", expr.replace("(", "").replace(")", ""))
    names, ops = parts[0::2], parts[1::2]
    unknown = [n for n in names if n not in BANK]
    if unknown:
        raise ValueError(f"kernel expression {expr!r} names {unknown}, not in the bank {sorted(BANK)}")
    canonical = expression(names, ops)
    if canonical != expr:
        raise ValueError(f"kernel expression {expr!r} must be written left to right with each step "
                         f"parenthesised: {canonical!r}")
    return names, ops


def _check_composition(names: list[str], ops: list[str]) -> None:
    if not names or len(ops) != len(names) - 1 or any(op not in ("+", "*") for op in ops):
        raise ValueError(f"ops must be {max(len(names) - 1, 0)} of '+' or '*' for {len(names)} names, got {ops!r}")
    unknown = [n for n in names if n not in BANK]
    if unknown:
        raise ValueError(f"names {unknown} are not in the kernel bank {sorted(BANK)}")


def compose(names: list[str], ops: list[str]) -> Callable:
    """A kernel built from named bank kernels left to right with '+' or '*' (e.g. rbf_1 + seasonality_24):
    ((k1 op1 k2) op2 k3) ..., the order KernelSynth composes in."""
    _check_composition(names, ops)
    kernels = [BANK[n] for n in names]

    def k(s, t):
        out = kernels[0](s, t)
        for op, kern in zip(ops, kernels[1:]):
            out = out + kern(s, t) if op == "+" else out * kern(s, t)
        return out
    return k


def resolve(name: str) -> Callable:
    """The kernel function k(s, t) of a name: a bank entry, a synthetic dataset's name (`SYNTH`) or a
    composition (`expression`)."""
    if not isinstance(name, str):
        raise ValueError(f"kernel must be a name (str) or a kernel function, got {type(name).__name__}")
    if name in BANK:
        return BANK[name]
    if name in SYNTH:
        return compose(*parse(SYNTH[name]))
    if "+" in name or "*" in name:
        return compose(*parse(name))
    raise ValueError(f"kernel must be one of {sorted(KERNELS)}, another bank kernel, a synthetic dataset "
                     f"(ks_000 ... ks_{len(SYNTH) - 1:03d}) or a composition such as 'rbf_1+seasonality_24', "
                     f"got {name!r}")


def synth_kernel(name: str) -> str:
    """KernelSynth's draw for a name (Ansari et al. 2024, Algorithm 2): j ~ U{1, ..., 5} kernels drawn
    uniformly with replacement from `BANK`, combined left to right, each step with '+' or '*' with
    probability 1/2. -> the composition's `expression`. Every choice comes from 32-bit words of the key
    named_key(PRNGKey(SYNTH_SEED), name), taken modulo the number of options (a bias below 1e-8), so the
    composition depends on the name alone, not on JAX_ENABLE_X64 (`jax.random.randint` draws differently in
    64-bit mode)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    words = [int(w) for w in jax.random.bits(keys.named_key(jax.random.PRNGKey(SYNTH_SEED), name),
                                             (2 * _MAX_KERNELS,), jnp.uint32)]
    count, bank = 1 + words[0] % _MAX_KERNELS, list(BANK)
    picks = [bank[w % len(bank)] for w in words[1:1 + count]]
    ops = ["+" if w % 2 else "*" for w in words[1 + _MAX_KERNELS:_MAX_KERNELS + count]]
    return expression(picks, ops)


def _unit_gram(kern: Callable, length: int) -> np.ndarray:
    """The Gram matrix at `length` points scaled to unit trace, flattened: [length²] (float64)."""
    k = np.asarray(gram(kern, length), np.float64).ravel()
    return k / np.sum(k[:: length + 1])


def synth_bank(count: int, length: int = INPUT + HORIZON) -> dict[str, str]:
    """The first `count` names ks_000, ks_001, ... whose `synth_kernel` is new: its Gram matrix U at `length`
    points, scaled to unit trace, lies more than 1% (relative Frobenius distance) from those of `KERNELS` and
    of every name kept before it, and is more than rank 1 (not a constant level or a line through 0:
    ‖U‖²_F < 1 − 1e-5, which for a Gram matrix with eigenvalues a ≥ b ≥ ... is about 2b/a > 1e-5).
    -> {name: expression}. `SYNTH` is `synth_bank(96)` written out."""
    count = V.positive_int("count", count)
    # the kept matrices as rows of one preallocated array (float32 is ample for a 1% criterion)
    kept = np.empty((len(KERNELS) + count, length * length), np.float32)
    for j, k in enumerate(KERNELS.values()):
        kept[j] = _unit_gram(k, length)
    used = len(KERNELS)
    sq = np.einsum("ij,ij->i", kept[:used], kept[:used], dtype=np.float64)
    out, i = {}, 0
    while len(out) < count:
        name, i = f"ks_{i:03d}", i + 1
        expr = synth_kernel(name)
        unit = _unit_gram(compose(*parse(expr)), length)
        usq = float(unit @ unit)
        # ‖U − S‖² = ‖U‖² + ‖S‖² − 2⟨U, S⟩ for every kept S at once
        dist_sq = usq + sq - 2.0 * (kept[:used] @ unit.astype(np.float32)).astype(np.float64)
        if usq >= 1.0 - 1e-5 or np.any(dist_sq <= 1e-4 * sq):
            continue
        kept[used], sq, used = unit, np.append(sq, usq), used + 1
        out[name] = expr
    return out


@functools.lru_cache(maxsize=128)
def _root(name: str, length: int, dtype: str) -> tuple[jax.Array, jax.Array]:
    """(U [length, length], sqrt(max(λ, 0)) [length]) of the named kernel's Gram matrix K = U diag(λ) Uᵀ."""
    lam, vecs = jnp.linalg.eigh(gram(resolve(name), length).astype(dtype))
    return vecs, jnp.sqrt(jnp.maximum(lam, 0.0))


def _factor(kern: str | Callable, length: int) -> tuple[jax.Array, jax.Array]:
    if isinstance(kern, str):
        resolve(kern)  # a ValueError for an unknown name, before any compute
        return _root(kern, length, str(V.float_dtype()))
    lam, vecs = jnp.linalg.eigh(gram(kern, length))
    return vecs, jnp.sqrt(jnp.maximum(lam, 0.0))


def sample(key: jax.Array, kernel: str | Callable, length: int = INPUT + HORIZON) -> jax.Array:
    """One GP draw [length] with zero mean and the named kernel (or a kernel function k(s, t)); key: a PRNG key.
    Uses K = U diag(λ) Uᵀ with λ clipped at 0 rather than Cholesky: periodic and dot-product Gram matrices are
    numerically low-rank. x = U (sqrt(λ) ⊙ z), z ~ N(0, I) drawn from `key`."""
    length = V.positive_int("length", length)
    vecs, root = _factor(kernel, length)
    return vecs @ (root * jax.random.normal(key, (length,), vecs.dtype))


def sample_many(key: jax.Array, kernel: str | Callable, count: int, length: int = INPUT + HORIZON) -> jax.Array:
    """`count` GP draws [count, length]: row i equals `sample(split(key, count)[i], kernel, length)` bit for
    bit, with the Gram matrix decomposed once (and, for a named kernel, cached per length and dtype, so every
    corpus of one dataset shares it)."""
    count, length = V.positive_int("count", count), V.positive_int("length", length)
    vecs, root = _factor(kernel, length)
    return _draw_many(jax.random.split(key, count), vecs, root)


@jax.jit
def _draw_many(keys: jax.Array, vecs: jax.Array, root: jax.Array) -> jax.Array:
    # one matrix-vector product per draw in a loop (lax.map), not one matrix product or a vmap, whose rounding
    # differs: each row stays equal to `sample`'s (tests check it bit for bit)
    return jax.lax.map(lambda k: vecs @ (root * jax.random.normal(k, root.shape, vecs.dtype)), keys)
