"""Flatness and sharpness of a loss at given weights, in plain PyTorch (plus scipy's Lanczos).

SEMA's claim is that averaging and switching finds flatter minima; these measures check it on any model::

    from sema_suite.analysis import flatness

    loss_fn = lambda: criterion(model(x), y)           # a scalar, computed with the model's own parameters
    params = [p for p in model.parameters() if p.requires_grad]
    eigs = flatness.top_eigenvalues(loss_fn, params, k=3)             # Hessian spectrum, largest first
    trace, stderr = flatness.hessian_trace(loss_fn, params, samples=64, seed=0)
    worst = flatness.sharpness(loss_fn, params, rho=0.05, adaptive=True, steps=10)
    mean, stderr = flatness.average_sharpness(loss_fn, params, rho=0.01, samples=16, seed=0, adaptive=True)
    alphas, curves = flatness.loss_along_directions(loss_fn, params, directions=3, points=25, span=1.0)
    ts, losses, barrier = flatness.interpolate(loss_fn, params, start=weights_a, end=weights_b)

Every function leaves ``params`` bit-for-bit as it found them, also when ``loss_fn`` raises: perturbed
weights are written in place and the saved originals copied back (never subtracted, which would round).
Gradients come from ``torch.autograd.grad``, so ``.grad`` is untouched too. Buffers are not saved: put the
model in eval mode first, or BatchNorm updates its running statistics on every call (and dropout makes the
loss random). Random vectors come from a ``torch.Generator`` seeded by ``seed`` and are drawn on the CPU, so
results are deterministic for a seed and do not depend on the device.

Choices:

* Hessian-vector products by double backward (``torch.autograd.grad`` of ``grad . v``) through one graph
  built once and retained, not ``torch.func`` (``jvp`` over ``grad``): ``loss_fn`` closes over the live
  parameters rather than taking them as arguments, and BatchNorm, in-place ops and custom kernels without
  forward-mode formulas all work with plain double backward.
* Top eigenvalues by Lanczos (``scipy.sparse.linalg.eigsh``, ``which="LA"``: largest algebraic, so a
  negative-curvature saddle is not reported as sharp) on a ``LinearOperator`` over the flattened parameter
  vector in float64; the products themselves run in the parameters' dtype.
* Trace by Hutchinson's estimator with Rademacher vectors (lower variance than Gaussian ones), returned as
  (mean, standard error of the mean).
* Adaptive sharpness as in ASAM (Kwon et al. 2021) and Andriushchenko et al. 2023: the perturbation is
  ``eps = |w| * delta`` with ``||delta|| <= rho``, which makes the measure invariant to rescaling the
  weights; zero weights are not perturbed.
* Worst-case sharpness by projected gradient ascent on ``delta``: start at SAM's normalised-gradient step
  onto the sphere, then take normalised gradient steps of length ``rho`` and project back onto the ball,
  keeping the largest loss seen (Andriushchenko et al. use Auto-PGD; this is simpler and never returns
  less than the SAM step).
* 1-D landscapes along filter-normalised random directions (Li et al. 2018); biases and all other 1-D
  parameters (BatchNorm) get a zero direction, the paper's "ignore biasbn" setting.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator, Sequence

import torch
from scipy.sparse.linalg import LinearOperator, eigsh

LossFn = Callable[[], torch.Tensor]
Tensors = list[torch.Tensor]


# -- shared plumbing ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _restoring(params: Sequence[torch.Tensor]) -> Iterator[Tensors]:
    """Yield copies of ``params`` and copy them back afterwards, bit for bit, even on an exception."""
    saved = [p.detach().clone() for p in params]
    try:
        yield saved
    finally:
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)


def _place(params: Sequence[torch.Tensor], origin: Tensors, offset: Tensors) -> None:
    """Set ``params`` to ``origin + offset`` in place."""
    with torch.no_grad():
        for p, w, o in zip(params, origin, offset):
            p.copy_(w + o)


def _loss(loss_fn: LossFn) -> float:
    with torch.no_grad():
        return float(loss_fn())


def _loss_and_grad(loss_fn: LossFn, params: Sequence[torch.Tensor]) -> tuple[float, Tensors]:
    with torch.enable_grad():
        loss = loss_fn()
        grads = torch.autograd.grad(loss, list(params), allow_unused=True)
    return float(loss.detach()), [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


def _norm(tensors: Tensors) -> float:
    return math.sqrt(sum(torch.linalg.vector_norm(t, dtype=torch.float64).item() ** 2 for t in tensors))


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _gaussian(params: Sequence[torch.Tensor], generator: torch.Generator) -> Tensors:
    return [torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device) for p in params]


def _rademacher(params: Sequence[torch.Tensor], generator: torch.Generator) -> Tensors:
    signs = [torch.randint(0, 2, p.shape, generator=generator).to(p.device, p.dtype) for p in params]
    return [s.mul_(2).sub_(1) for s in signs]


def _with_norm(tensors: Tensors, norm: float) -> Tensors:
    factor = norm / _norm(tensors)
    return [t * factor for t in tensors]


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


# -- curvature: the Hessian ------------------------------------------------------------------------------------


class BatchedLoss:
    """A loss that is the mean of per-batch terms (``parts``, each a no-argument callable). Calling it gives the
    mean; Hessian-vector products take it one batch at a time, so only one batch's double-backward graph is
    alive at once (memory stays that of one batch, however many the measurement uses)."""

    def __init__(self, parts: Sequence[LossFn]) -> None:
        _check(len(parts) >= 1, "a batched loss needs at least one batch")
        self.parts = list(parts)

    def __call__(self) -> torch.Tensor:
        return sum(part() for part in self.parts) / len(self.parts)


def _autograd_hvp(loss_fn: LossFn, params: list[torch.Tensor]) -> Callable[[Tensors], Tensors]:
    """``v -> H v`` by double backward. One loss: its gradient graph is built once and reused. A
    :class:`BatchedLoss` of several batches: each product builds and frees one batch's graph at a time."""
    if isinstance(loss_fn, BatchedLoss) and len(loss_fn.parts) > 1:
        def batched(vector: Tensors) -> Tensors:
            total = [torch.zeros_like(p) for p in params]
            for part in loss_fn.parts:
                for t, h in zip(total, _autograd_hvp(part, params)(vector)):
                    t.add_(h, alpha=1 / len(loss_fn.parts))
            return total

        return batched
    with torch.enable_grad():
        grads = torch.autograd.grad(loss_fn(), params, create_graph=True, allow_unused=True)
    # A gradient that does not depend on the parameters (unused, or loss linear in them) has a zero Hessian row.
    curved = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]

    def product(vector: Tensors) -> Tensors:
        if not curved:
            return [torch.zeros_like(p) for p in params]
        hv = torch.autograd.grad([grads[i] for i in curved], params, grad_outputs=[vector[i] for i in curved],
                                 retain_graph=True, allow_unused=True)
        return [torch.zeros_like(p) if h is None else h.detach() for p, h in zip(params, hv)]

    return product


def _finite_difference_hvp(loss_fn: LossFn, params: list[torch.Tensor]) -> Callable[[Tensors], Tensors]:
    """``v -> H v`` as the central difference of gradients, ``(g(w + h v) - g(w - h v)) / 2h``, with the step
    ``h v`` a thousandth of the weights' norm: first derivatives only, so it sees through any op."""
    scale = 1e-3 * max(1.0, math.sqrt(sum(float(p.detach().double().square().sum()) for p in params)))

    def product(vector: Tensors) -> Tensors:
        norm = math.sqrt(sum(float(v.double().square().sum()) for v in vector)) or 1.0
        step = scale / norm
        with _restoring(params) as origin:
            _place(params, origin, [step * v for v in vector])
            plus = _loss_and_grad(loss_fn, params)[1]
            _place(params, origin, [-step * v for v in vector])
            minus = _loss_and_grad(loss_fn, params)[1]
        return [(a - b) / (2 * step) for a, b in zip(plus, minus)]

    return product


def _hessian_vector_product(loss_fn: LossFn, params: Sequence[torch.Tensor]) -> Callable[[Tensors], Tensors]:
    """``v -> H v`` at the current ``params``, checked once against finite differences of gradients.

    An op whose backward is ``@once_differentiable`` (mmcv's RoIAlign in Mask R-CNN, its CUDA sigmoid focal
    loss) silently drops out of double backward, so the curvature through it would read as zero. When the two
    disagree on a probe vector, the finite-difference product is used for this measurement, with a warning.
    """
    params = list(params)
    probe = _rademacher(params, _generator(12345))
    exact = _autograd_hvp(loss_fn, params)(probe)
    approx = _finite_difference_hvp(loss_fn, params)
    reference = approx(probe)
    gap = math.sqrt(sum(float((a - b).double().square().sum()) for a, b in zip(exact, reference)))
    size = math.sqrt(sum(float(b.double().square().sum()) for b in reference))
    if gap <= 0.1 * size + 1e-8:
        return _autograd_hvp(loss_fn, params)  # a fresh graph: the probe's steps moved the weights in place
    warnings.warn(f"double backward misses curvature here (|Hv - finite difference| = {gap:.3g} against "
                  f"|Hv| = {size:.3g}: an op with a once-differentiable backward, such as mmcv's RoIAlign); "
                  "Hessian-vector products use central finite differences of gradients instead", stacklevel=3)
    return approx


def top_eigenvalues(loss_fn: LossFn, params: Sequence[torch.Tensor], k: int = 3, seed: int = 0,
                    tol: float = 1e-4) -> list[float]:
    """The ``k`` largest (algebraic) Hessian eigenvalues, largest first, by Lanczos.

    ``tol`` is ARPACK's relative residual tolerance; its default 0 (machine precision in float64) is not
    reachable with float32 Hessian-vector products. ``seed`` fixes Lanczos' start vector.
    """
    size = sum(p.numel() for p in params)
    _check(1 <= k < size, f"k must be in [1, {size - 1}] (fewer than the {size} parameters), got {k}")
    hvp = _hessian_vector_product(loss_fn, params)
    shapes = [(p.shape, p.numel(), p.dtype, p.device) for p in params]

    def matvec(flat):  # a float64 numpy vector in, one out
        chunks = torch.from_numpy(flat.reshape(-1)).split([n for _, n, _, _ in shapes])
        vector = [c.reshape(shape).to(device, dtype) for c, (shape, _, dtype, device) in zip(chunks, shapes)]
        return torch.cat([h.reshape(-1).to("cpu", torch.float64) for h in hvp(vector)]).numpy()

    operator = LinearOperator((size, size), matvec=matvec, dtype="float64")
    start = torch.randn(size, generator=_generator(seed), dtype=torch.float64).numpy()
    values = eigsh(operator, k=k, which="LA", v0=start, tol=tol, return_eigenvectors=False)
    return sorted((float(v) for v in values), reverse=True)


def hessian_trace(loss_fn: LossFn, params: Sequence[torch.Tensor], samples: int = 64,
                  seed: int = 0) -> tuple[float, float]:
    """Hutchinson's estimate of ``tr(H)`` = E[v^T H v] over Rademacher ``v``: (mean, standard error)."""
    _check(samples >= 2, f"samples must be >= 2 (for a standard error), got {samples}")
    hvp = _hessian_vector_product(loss_fn, params)
    generator = _generator(seed)
    estimates = []
    for _ in range(samples):
        v = _rademacher(params, generator)
        estimates.append(sum(float((a * b).sum(dtype=torch.float64)) for a, b in zip(v, hvp(v))))
    values = torch.tensor(estimates, dtype=torch.float64)
    return values.mean().item(), (values.std() / math.sqrt(samples)).item()


# -- sharpness: loss increase under perturbations --------------------------------------------------------------


def sharpness(loss_fn: LossFn, params: Sequence[torch.Tensor], rho: float = 0.05, adaptive: bool = False,
              steps: int = 10, seed: int = 0) -> float:
    """Worst-case loss increase ``max L(w + eps) - L(w)`` over the ball of radius ``rho`` (>= 0, 0 at rho=0).

    The ball is ``||eps|| <= rho``, or with ``adaptive`` ``eps = |w| * delta`` with ``||delta|| <= rho``.
    ``steps`` projected-ascent steps follow SAM's step (``steps=0`` is SAM's / ASAM's one-step estimate);
    ``seed`` only matters at a point with zero gradient, where the ascent starts from a random direction.
    """
    _check(rho >= 0, f"rho must be >= 0, got {rho}")
    _check(steps >= 0, f"steps must be >= 0, got {steps}")
    if rho == 0:
        return 0.0
    with _restoring(params) as origin:
        scale = [w.abs() for w in origin] if adaptive else [torch.ones_like(w) for w in origin]
        base, grads = _loss_and_grad(loss_fn, params)
        ascent = [s * g for s, g in zip(scale, grads)]  # d loss / d delta, as eps = scale * delta
        if _norm(ascent) == 0:
            ascent = _gaussian(params, _generator(seed))
        delta = _with_norm(ascent, rho)
        best = base
        for step in range(steps + 1):
            _place(params, origin, [s * d for s, d in zip(scale, delta)])
            if step == steps:
                best = max(best, _loss(loss_fn))
                break
            loss, grads = _loss_and_grad(loss_fn, params)
            best = max(best, loss)
            ascent = [s * g for s, g in zip(scale, grads)]
            length = _norm(ascent)
            if length == 0:
                break
            delta = [d + a * (rho / length) for d, a in zip(delta, ascent)]
            if (norm := _norm(delta)) > rho:
                delta = [d * (rho / norm) for d in delta]
    return best - base


def average_sharpness(loss_fn: LossFn, params: Sequence[torch.Tensor], rho: float = 0.01, samples: int = 16,
                      seed: int = 0, adaptive: bool = False) -> tuple[float, float]:
    """Average-case sharpness E[L(w + delta)] - L(w) as Andriushchenko et al. (2023) define it: every coordinate
    perturbed independently, ``delta_i ~ N(0, rho^2)`` or, with ``adaptive``, ``N(0, rho^2 w_i^2)``.

    Antithetic pairs (``+delta`` and ``-delta``, whose mean cancels the gradient's first-order term): the mean
    over ``samples`` pairs and its standard error. At a minimum it is ``rho^2 / 2 * tr(D H D)`` (``D`` =
    ``diag|w|`` or ``I``): per coordinate, not ~1/dim of it as a perturbation of total norm ``rho`` would give.
    """
    _check(rho >= 0, f"rho must be >= 0, got {rho}")
    _check(samples >= 2, f"samples must be >= 2 (pairs, for a standard error), got {samples}")
    generator = _generator(seed)
    with _restoring(params) as origin:
        base = _loss(loss_fn)
        estimates = []
        for _ in range(samples):
            delta = [rho * (w.abs() if adaptive else 1) * z for w, z in zip(origin, _gaussian(params, generator))]
            pair = 0.0
            for sign in (1, -1):
                _place(params, origin, [sign * d for d in delta])
                pair += _loss(loss_fn) / 2
            estimates.append(pair - base)
    values = torch.tensor(estimates, dtype=torch.float64)
    return values.mean().item(), (values.std() / math.sqrt(samples)).item()


# -- landscapes ------------------------------------------------------------------------------------------------


def filter_normalized_directions(params: Sequence[torch.Tensor], count: int = 1, seed: int = 0) -> list[Tensors]:
    """``count`` random directions, each filter (row of the first dimension) rescaled to its weight's norm.

    Li et al. 2018: without this, a network's scale invariance (BatchNorm, ReLU) makes plots incomparable.
    Parameters with fewer than 2 dimensions (biases, BatchNorm) get a zero direction ("ignore biasbn").
    """
    generator = _generator(seed)
    directions = []
    for _ in range(count):
        direction = []
        for w, d in zip(params, _gaussian(params, generator)):
            if w.dim() < 2:
                direction.append(torch.zeros_like(d))
                continue
            rows, weight_rows = d.reshape(len(d), -1), w.detach().reshape(len(w), -1)
            factor = weight_rows.norm(dim=1, keepdim=True) / rows.norm(dim=1, keepdim=True)
            direction.append((rows * factor).reshape(w.shape))
        directions.append(direction)
    return directions


def loss_along_directions(loss_fn: LossFn, params: Sequence[torch.Tensor], directions: int = 3,
                          points: int = 25, span: float = 1.0,
                          seed: int = 0) -> tuple[list[float], list[list[float]]]:
    """The loss at ``w + alpha * d`` for ``alpha`` in ``[-span, span]``, along each filter-normalised ``d``.

    Returns the alphas and one list of losses per direction; with an odd ``points`` the middle alpha is
    exactly 0, i.e. the loss at ``w``.
    """
    _check(points >= 2, f"points must be >= 2, got {points}")
    alphas = [span * (2 * i / (points - 1) - 1) for i in range(points)]
    curves = []
    with _restoring(params) as origin:
        for direction in filter_normalized_directions(params, directions, seed):
            curve = []
            for alpha in alphas:
                _place(params, origin, [d * alpha for d in direction])
                curve.append(_loss(loss_fn))
            curves.append(curve)
    return alphas, curves


def interpolate(loss_fn: LossFn, params: Sequence[torch.Tensor], start: Sequence[torch.Tensor],
                end: Sequence[torch.Tensor], points: int = 11) -> tuple[list[float], list[float], float]:
    """The loss along ``(1 - t) * start + t * end`` (e.g. two jobs' weights), and the barrier on that path.

    The barrier is ``max_t [loss_t - ((1 - t) * loss_0 + t * loss_1)]``: the largest excess over the chord
    between the end losses, so 0 (never negative: the ends count) when the path is convex, as within one
    basin. Only ``params`` move; load matching buffers (BatchNorm statistics) yourself if they matter.
    Returns ``ts`` (0 and 1 exactly), the losses and the barrier.
    """
    _check(points >= 2, f"points must be >= 2, got {points}")
    _check(len(start) == len(end) == len(params), "start, end and params must have the same length")
    for p, a, b in zip(params, start, end):
        _check(p.shape == a.shape == b.shape, f"shapes differ: {p.shape}, {a.shape}, {b.shape}")
    ts = [i / (points - 1) for i in range(points)]
    losses = []
    with _restoring(params):
        for t in ts:
            with torch.no_grad():
                for p, a, b in zip(params, start, end):
                    p.copy_(torch.lerp(a.to(p), b.to(p), t))  # exactly a at t=0 and b at t=1
            losses.append(_loss(loss_fn))
    return ts, losses, barrier(ts, losses)


def barrier(ts: Sequence[float], values: Sequence[float], higher_is_better: bool = False) -> float:
    """The largest excess of ``values`` (measured at ``ts`` from 0 to 1) over the chord between the end values,
    in the worse direction (up for a loss, down for an accuracy): 0 when the path is convex, never negative."""
    sign = -1.0 if higher_is_better else 1.0
    return max(sign * (v - ((1 - t) * values[0] + t * values[-1])) for t, v in zip(ts, values)) + 0.0  # no -0.0
