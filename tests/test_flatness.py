"""Flatness measures against closed forms (least squares, quadratics) and a dense autograd Hessian."""

from __future__ import annotations

from collections.abc import Callable

import numpy
import pytest
import torch
from torch import nn

from sema_suite.analysis import flatness


def least_squares(dtype: torch.dtype = torch.float32, at_minimum: bool = False):
    """``L(w) = mean((X w - y)^2)``, whose Hessian is ``2/n X^T X`` everywhere."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, 8, generator=gen, dtype=torch.float64) * torch.linspace(0.5, 3.0, 8, dtype=torch.float64)
    y = torch.randn(40, generator=gen, dtype=torch.float64)
    w0 = torch.linalg.lstsq(x, y.unsqueeze(1)).solution.squeeze(1) if at_minimum else torch.randn(8, generator=gen)
    w = nn.Parameter(w0.to(dtype))
    x, y = x.to(dtype), y.to(dtype)
    hessian = (2 / len(x) * x.T @ x).double()
    return (lambda: (x @ w - y).pow(2).mean()), [w], hessian


def mlp(dtype: torch.dtype = torch.float64):
    """A 5 -> 8 -> 3 tanh network with cross-entropy on 32 samples, and ``flat params -> loss`` for the reference."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).to(dtype)
    x, y = torch.randn(32, 5, dtype=dtype), torch.randint(0, 3, (32,))
    names = [n for n, _ in model.named_parameters()]
    params = list(model.parameters())

    def flat_loss(flat: torch.Tensor) -> torch.Tensor:
        tensors = [c.reshape(p.shape) for c, p in zip(flat.split([p.numel() for p in params]), params)]
        out = torch.func.functional_call(model, dict(zip(names, tensors)), (x,))
        return nn.functional.cross_entropy(out, y)

    return (lambda: nn.functional.cross_entropy(model(x), y)), params, flat_loss


def dense_hessian(flat_loss: Callable[[torch.Tensor], torch.Tensor], params: list[torch.Tensor]) -> torch.Tensor:
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    return torch.autograd.functional.hessian(flat_loss, flat)


def test_least_squares_spectrum_and_trace() -> None:
    loss_fn, params, hessian = least_squares()
    exact = numpy.linalg.eigvalsh(hessian.numpy())[::-1]
    assert exact[0] > 1.5 * exact[2]  # a spread spectrum, so a wrong order or eigenvalue shows
    eigs = flatness.top_eigenvalues(loss_fn, params, k=3)
    assert eigs == sorted(eigs, reverse=True)
    numpy.testing.assert_allclose(eigs, exact[:3], rtol=1e-3)
    trace, stderr = flatness.hessian_trace(loss_fn, params, samples=64, seed=0)
    assert 0 < stderr < 0.1 * trace
    assert abs(trace - float(hessian.trace())) < 3 * stderr


def test_mlp_spectrum_and_trace_match_dense_hessian() -> None:
    loss_fn, params, flat_loss = mlp()
    hessian = dense_hessian(flat_loss, params)
    exact = torch.linalg.eigvalsh(hessian).flip(0)
    eigs = flatness.top_eigenvalues(loss_fn, params, k=3)
    numpy.testing.assert_allclose(eigs, exact[:3].numpy(), rtol=1e-4)
    trace, stderr = flatness.hessian_trace(loss_fn, params, samples=512, seed=0)
    assert 0 < stderr < 0.1 * abs(trace)
    assert abs(trace - float(hessian.trace())) < 3 * stderr


def test_top_eigenvalues_are_the_largest_algebraic_not_the_largest_in_magnitude() -> None:
    # a saddle: 0.5 * w^T diag(-5, -4, 1, 2, 3) w; sharpness is about the positive curvature
    w = nn.Parameter(torch.ones(5, dtype=torch.float64))
    curvature = torch.tensor([-5.0, -4.0, 1.0, 2.0, 3.0], dtype=torch.float64)
    eigs = flatness.top_eigenvalues(lambda: 0.5 * (curvature * w**2).sum(), [w], k=2)
    assert eigs == pytest.approx([3.0, 2.0], rel=1e-6)


def test_too_many_eigenvalues_is_an_error() -> None:
    loss_fn, params, _ = least_squares()
    with pytest.raises(ValueError, match="k must be"):
        flatness.top_eigenvalues(loss_fn, params, k=8)


@pytest.mark.parametrize("adaptive", [False, True])
def test_sharpness_grows_with_rho(adaptive: bool) -> None:
    loss_fn, params, _ = mlp()
    rhos = [0.0, 0.01, 0.03, 0.1, 0.3]
    worst = [flatness.sharpness(loss_fn, params, rho=r, adaptive=adaptive, steps=5) for r in rhos]
    assert worst[0] == 0.0
    assert all(w > 0 for w in worst[1:])
    assert worst == sorted(worst)
    one_step = flatness.sharpness(loss_fn, params, rho=0.1, adaptive=adaptive, steps=0)
    assert 0 < one_step <= worst[3]
    assert flatness.average_sharpness(loss_fn, params, rho=0.0, samples=4, adaptive=adaptive) == (0.0, 0.0)


@pytest.mark.parametrize("adaptive", [False, True])
def test_sharpness_at_a_quadratic_minimum_is_half_the_top_curvature(adaptive: bool) -> None:
    # At the minimum, L(w + eps) - L(w) = eps^T H eps / 2 with eps = D delta, ||delta|| <= rho (D = diag|w| or I):
    # the worst case is rho^2 / 2 * lambda_max(D H D). Average-case sharpness perturbs every coordinate by
    # N(0, rho^2 D^2): rho^2 / 2 * tr(D H D) -- not 1/dim of it, as a perturbation of total norm rho gives.
    loss_fn, params, hessian = least_squares(torch.float64, at_minimum=True)
    scale = params[0].detach().abs() if adaptive else torch.ones(8, dtype=torch.float64)
    scaled = scale[:, None] * hessian * scale[None, :]
    rho = 0.1
    worst = flatness.sharpness(loss_fn, params, rho=rho, adaptive=adaptive, steps=40)
    expected = rho**2 / 2 * float(torch.linalg.eigvalsh(scaled)[-1])
    assert worst == pytest.approx(expected, rel=1e-3)
    assert worst <= expected * (1 + 1e-9)  # never outside the ball
    mean, stderr = flatness.average_sharpness(loss_fn, params, rho=rho, samples=400, seed=0, adaptive=adaptive)
    expected = rho**2 / 2 * float(scaled.trace())
    assert mean == pytest.approx(expected, rel=0.1) and abs(mean - expected) < 4 * stderr and 0 < stderr < 0.1 * mean


class Flaky:
    """A loss function that raises on its ``fail_at``-th call and records whether the weights were moved then."""

    def __init__(self, loss_fn: Callable[[], torch.Tensor], params: list[torch.Tensor], fail_at: int) -> None:
        self.loss_fn, self.params, self.fail_at = loss_fn, params, fail_at
        self.original = [p.detach().clone() for p in params]
        self.calls, self.moved = 0, False

    def __call__(self) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.fail_at:
            self.moved = any(not torch.equal(p, o) for p, o in zip(self.params, self.original))
            raise RuntimeError("loss failed")
        return self.loss_fn()


MEASURES = {
    "top_eigenvalues": (lambda f, p: flatness.top_eigenvalues(f, p, k=2), False),
    "hessian_trace": (lambda f, p: flatness.hessian_trace(f, p, samples=4), False),
    "sharpness": (lambda f, p: flatness.sharpness(f, p, rho=0.1, steps=3), True),
    "adaptive_sharpness": (lambda f, p: flatness.sharpness(f, p, rho=0.1, adaptive=True, steps=3), True),
    "average_sharpness": (lambda f, p: flatness.average_sharpness(f, p, rho=0.1, samples=4, adaptive=True), True),
    "loss_along_directions": (lambda f, p: flatness.loss_along_directions(f, p, directions=2, points=5), True),
    "interpolate": (lambda f, p: flatness.interpolate(f, p, [t + 1 for t in p], [t - 1 for t in p], points=5), True),
}


@pytest.mark.parametrize("name", MEASURES)
def test_parameters_restored_bit_exactly_even_when_the_loss_raises(name: str) -> None:
    measure, perturbs = MEASURES[name]
    loss_fn, params, _ = mlp(torch.float32)
    original = [p.detach().clone() for p in params]
    measure(loss_fn, params)
    assert all(torch.equal(p, o) for p, o in zip(params, original))
    assert all(p.grad is None for p in params)
    flaky = Flaky(loss_fn, params, fail_at=2 if perturbs else 1)
    with pytest.raises(RuntimeError, match="loss failed"):
        measure(flaky, params)
    assert flaky.moved == perturbs  # the failure hit perturbed weights, so restoring them was needed
    assert all(torch.equal(p, o) for p, o in zip(params, original))


def test_same_seed_same_results_and_other_seed_other_estimate() -> None:
    loss_fn, params, _ = mlp(torch.float32)
    runs = [
        (
            flatness.top_eigenvalues(loss_fn, params, k=2, seed=seed),
            flatness.hessian_trace(loss_fn, params, samples=8, seed=seed),
            flatness.sharpness(loss_fn, params, rho=0.1, adaptive=True, steps=3),
            flatness.average_sharpness(loss_fn, params, rho=0.1, samples=4, seed=seed),
            flatness.loss_along_directions(loss_fn, params, directions=2, points=5, seed=seed),
        )
        for seed in (0, 0, 1)
    ]
    assert runs[0] == runs[1]
    assert runs[2][1] != runs[0][1]  # Hutchinson
    assert runs[2][3] != runs[0][3]  # random perturbations
    assert runs[2][4] != runs[0][4]  # random directions


def test_filter_normalized_directions() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    params = list(model.parameters())
    first, second = flatness.filter_normalized_directions(params, count=2, seed=0)
    for w, d, other in zip(params, first, second):
        if w.dim() < 2:  # conv / linear biases and BatchNorm's weight and bias
            assert torch.equal(d, torch.zeros_like(w))
            continue
        assert d.shape == w.shape
        torch.testing.assert_close(d.flatten(1).norm(dim=1), w.detach().flatten(1).norm(dim=1))
        assert not torch.allclose(d, w) and not torch.allclose(d, other)
    assert sum(w.dim() < 2 for w in params) == 4


def test_loss_along_directions_walks_the_same_directions() -> None:
    loss_fn, params, _ = mlp()
    base = float(loss_fn().detach())
    alphas, curves = flatness.loss_along_directions(loss_fn, params, directions=2, points=5, span=0.5, seed=3)
    assert alphas == [-0.5, -0.25, 0.0, 0.25, 0.5]
    assert len(curves) == 2 and all(len(c) == 5 for c in curves)
    assert all(c[2] == base for c in curves)  # alpha = 0 is the unperturbed loss, exactly
    assert all(c[0] != base and c[4] != base for c in curves)
    direction = flatness.filter_normalized_directions(params, count=2, seed=3)[1]
    with torch.no_grad():
        for p, d in zip(params, direction):
            p.add_(d, alpha=-0.25)
        assert curves[1][1] == pytest.approx(float(loss_fn()), rel=1e-12)


def test_interpolate_endpoints_and_barriers() -> None:
    loss_fn, params, _ = mlp()
    gen = torch.Generator().manual_seed(1)
    start = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params]
    end = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params]
    ts, losses, _ = flatness.interpolate(loss_fn, params, start, end, points=11)
    assert ts[0] == 0.0 and ts[-1] == 1.0 and len(ts) == len(losses) == 11
    for weights, loss in ((start, losses[0]), (end, losses[-1])):
        with torch.no_grad():
            for p, w in zip(params, weights):
                p.copy_(w)
        assert loss == float(loss_fn().detach())

    # a convex quadratic: the path never rises above the chord, so no barrier
    w = nn.Parameter(torch.zeros(6, dtype=torch.float64))
    curvature, centre = torch.linspace(0.5, 4.0, 6, dtype=torch.float64), torch.ones(6, dtype=torch.float64)
    quadratic = lambda: (curvature * (w - centre) ** 2).sum()  # noqa: E731
    _, losses, barrier = flatness.interpolate(quadratic, [w], [torch.full((6,), -2.0)], [torch.full((6,), 3.0)])
    assert barrier == 0.0 and max(losses[1:-1]) < max(losses[0], losses[-1])

    # a double well (x^2 - 1)^2 between its minima at -1 and 1 has a barrier of height 1 at x = 0
    v = nn.Parameter(torch.zeros(1, dtype=torch.float64))
    ts, losses, barrier = flatness.interpolate(lambda: (v**2 - 1).pow(2).sum(), [v], [-torch.ones(1)], [torch.ones(1)])
    assert (losses[0], losses[5], losses[-1]) == (0.0, 1.0, 0.0) and barrier == 1.0


class _OnceSquare(torch.autograd.Function):
    """x^2 with a backward that cannot be differentiated again, as mmcv's RoIAlign and focal loss are."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return 2 * x * grad


def test_curvature_through_a_once_differentiable_op_is_measured_not_dropped() -> None:
    """Double backward stops at such an op and would report a Hessian trace of 0; the products fall back to
    finite differences of gradients (with a warning) and give the true trace, 2 * sum(a^2)."""
    a = torch.linspace(0.5, 2.0, 6, dtype=torch.float64)
    w = torch.nn.Parameter(torch.linspace(-1.0, 1.0, 6, dtype=torch.float64))

    def loss_fn() -> torch.Tensor:
        return _OnceSquare.apply(w * a).sum()

    with pytest.warns(UserWarning, match="once-differentiable"):
        trace, _ = flatness.hessian_trace(loss_fn, [w], samples=8, seed=0)
    assert trace == pytest.approx(2 * float((a * a).sum()), rel=1e-6)
    with pytest.warns(UserWarning):
        (top,) = flatness.top_eigenvalues(loss_fn, [w], k=1)
    assert top == pytest.approx(2 * 4.0, rel=1e-4)


def test_a_batched_loss_gives_the_same_curvature_one_batch_graph_at_a_time() -> None:
    """Per-batch Hessian-vector products, accumulated, equal those of the mean loss (whose one graph would hold
    every batch at once)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()
    batches = [(torch.randn(16, 4, dtype=torch.float64), torch.randn(16, 1, dtype=torch.float64)) for _ in range(3)]
    parts = [lambda x=x, y=y: ((net(x) - y) ** 2).mean() for x, y in batches]
    batched = flatness.BatchedLoss(parts)
    params = list(net.parameters())
    with torch.no_grad():
        assert float(batched()) == pytest.approx(float(sum(p() for p in parts) / 3))
    joint = flatness.hessian_trace(lambda: sum(p() for p in parts) / 3, params, samples=8, seed=0)
    assert flatness.hessian_trace(batched, params, samples=8, seed=0) == pytest.approx(joint, rel=1e-9)
    assert flatness.top_eigenvalues(batched, params, k=1) == pytest.approx(
        flatness.top_eigenvalues(lambda: sum(p() for p in parts) / 3, params, k=1), rel=1e-6)
