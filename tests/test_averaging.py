"""The averaging core against a straightforward per-tensor reference loop."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from sema_suite.method.averaging import DecayWarmup, WeightAverager


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))


def train_step(model: nn.Module, opt: torch.optim.Optimizer) -> None:
    model.train()
    loss = model(torch.randn(8, 1, 8, 8)).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()


class Reference:
    """avg <- d_t * avg + (1 - d_t) * w, one tensor at a time, float buffers averaged, int buffers copied."""

    def __init__(self, decays, average_buffers=True, interval=1):
        self.decays, self.average_buffers, self.interval = iter(decays), average_buffers, interval
        self.calls, self.state = 0, None

    def update(self, model: nn.Module) -> None:
        self.calls += 1
        if self.calls % self.interval:
            return
        params = dict(model.named_parameters())
        current = {**params, **dict(model.named_buffers())}
        if self.state is None:
            self.state = {n: t.detach().clone().float() if t.is_floating_point() else t.clone() for n, t in current.items()}
            return
        d = next(self.decays)
        for n, t in current.items():
            if t.is_floating_point() and (self.average_buffers or n in params):
                self.state[n] = d * self.state[n] + (1 - d) * t.detach().float()
            else:
                self.state[n] = t.detach().clone()


def assert_state_equal(avg: WeightAverager, ref: Reference) -> None:
    mine = avg.averaged_state()
    assert set(mine) == set(ref.state)
    for name, tensor in ref.state.items():
        torch.testing.assert_close(mine[name].float(), tensor.float(), rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("average_buffers", [True, False])
def test_update_matches_reference(average_buffers: bool) -> None:
    model = small_net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    avg = WeightAverager(model, decay=0.9, average_buffers=average_buffers)
    ref = Reference([0.9] * 100, average_buffers=average_buffers)
    for _ in range(6):
        train_step(model, opt)
        avg.update(model)
        ref.update(model)
        assert_state_equal(avg, ref)
    # the average really lags the weights (so the test above could fail)
    assert not torch.allclose(avg.averaged_state()["4.weight"], model[4].weight)
    running = avg.averaged_state()["1.running_mean"]
    assert torch.equal(running, model[1].running_mean) != average_buffers
    assert avg.averaged_state()["1.num_batches_tracked"] == model[1].num_batches_tracked


def test_warmup_and_interval_match_reference() -> None:
    model = small_net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    warm = DecayWarmup(steps=3, start_factor=0.5)
    avg = WeightAverager(model, decay=0.9, warmup=warm, update_interval=2)
    decays = [0.9 * warm.factor(k) for k in range(10)]
    assert decays[:4] == pytest.approx([0.45, 0.6, 0.75, 0.9])
    ref = Reference(decays, interval=2)
    for step in range(1, 11):
        train_step(model, opt)
        assert avg.update(model) == (step % 2 == 0)
        ref.update(model)
        if ref.state is not None:
            assert_state_equal(avg, ref)
    assert (avg.num_calls, avg.num_updates) == (10, 5)


def test_copy_to_is_the_switch_and_swapped_restores_bit_exactly() -> None:
    model = small_net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    avg = WeightAverager(model, decay=0.5)
    for _ in range(3):
        train_step(model, opt)
        avg.update(model)
    trained = copy.deepcopy(model.state_dict())
    with avg.swapped(model):
        for name, value in model.state_dict().items():
            assert torch.equal(value, avg.averaged_state()[name].to(value.dtype)), name
    for name, value in model.state_dict().items():
        assert torch.equal(value, trained[name]), name  # bit-exact restore
    assert any(not torch.equal(trained[n], avg.averaged_state()[n]) for n in trained)
    avg.copy_to(model)
    for name, value in model.state_dict().items():
        assert torch.equal(value, avg.averaged_state()[name]), name
    state_before = copy.deepcopy(avg.state_dict())
    avg.update(model)  # the average keeps its value through a switch: w == avg, so lerp leaves it unchanged
    for name, value in avg.averaged_state().items():
        torch.testing.assert_close(value, state_before["averaged"][name])


def test_state_dict_round_trip_continues_identically() -> None:
    model = small_net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    avg = WeightAverager(model, decay=0.8, warmup=DecayWarmup(5))
    for _ in range(3):
        train_step(model, opt)
        avg.update(model)
    clone = WeightAverager(small_net(), decay=0.8, warmup=DecayWarmup(5))
    clone.load_state_dict(avg.state_dict())
    assert (clone.num_calls, clone.num_updates) == (avg.num_calls, avg.num_updates)
    train_step(model, opt)
    avg.update(model)
    clone.update(model)
    for name, value in avg.averaged_state().items():
        assert torch.equal(value, clone.averaged_state()[name]), name


def test_load_state_dict_rejects_another_model() -> None:
    avg = WeightAverager(small_net())
    other = WeightAverager(nn.Linear(2, 2))
    with pytest.raises(KeyError, match="does not match"):
        avg.load_state_dict(other.state_dict())


def test_low_precision_params_are_averaged_in_float32() -> None:
    model = small_net().to(torch.bfloat16)
    with torch.no_grad():
        model[4].weight.fill_(1.0)
    avg = WeightAverager(model, decay=0.999)
    avg.update(model)
    before = model[4].weight.float().clone()
    with torch.no_grad():
        model[4].weight.add_(1.0)
    avg.update(model)
    averaged = avg.averaged_state()["4.weight"]
    assert averaged.dtype == torch.float32
    expected = 0.999 * before + 0.001 * model[4].weight.float()
    torch.testing.assert_close(averaged, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(averaged, torch.full_like(averaged, 1.001))
    # in bf16 (spacing 2**-7 at 1.0) the same step would round away: why the average is kept in float32
    assert torch.all(averaged.to(torch.bfloat16) == 1.0)


def test_wrapped_model_and_excluded_prefixes() -> None:
    class Wrapper(nn.Module):  # the shape of DDP / mmengine wrappers: the real model under `.module`
        def __init__(self, module: nn.Module) -> None:
            super().__init__()
            self.module = module

    net = nn.ModuleDict({"online": nn.Linear(2, 2), "target": nn.Linear(2, 2)})
    avg = WeightAverager(Wrapper(net), decay=0.5, exclude=("target.",))
    assert set(avg.averaged_state()) == {"online.weight", "online.bias"}
    avg.update(Wrapper(net))
    target_before = net["target"].weight.detach().clone()
    with torch.no_grad():
        net["target"].weight.add_(5.0)
    avg.copy_to(net)
    assert torch.equal(net["target"].weight, target_before + 5.0)


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="decay"):
        WeightAverager(small_net(), decay=1.5)
    with pytest.raises(ValueError, match="update_interval"):
        WeightAverager(small_net(), update_interval=0)


@pytest.mark.parametrize("order", ["fp32 first", "fp16 first"])
def test_float_dtypes_mixed_in_any_order(order: str) -> None:
    """fp32 and fp16 parameters share the float32 average group whatever their order in the model."""
    layers = [nn.Linear(4, 4), nn.Linear(4, 4).half()]
    model = nn.Sequential(*(layers if order == "fp32 first" else layers[::-1]))
    avg = WeightAverager(model, decay=0.75)
    avg.update(model)
    expected = {k: v.detach().float().clone() for k, v in model.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    avg.update(model)
    for name, p in model.named_parameters():
        assert torch.allclose(avg.averaged_state()[name], 0.75 * expected[name] + 0.25 * p.float())
    before = copy.deepcopy(model.state_dict())
    with avg.swapped(model):
        assert all(torch.equal(p, avg.averaged_state()[n].to(p.dtype)) for n, p in model.named_parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    avg.copy_to(model)
    assert all(p.dtype == before[n].dtype for n, p in model.named_parameters())


def test_the_average_follows_tensors_the_model_replaces() -> None:
    """After the first update, ``model.to(...)`` and ``load_state_dict(..., assign=True)`` put new tensors in the
    model; the average must read those, not the storage it saw first."""
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    avg = WeightAverager(model, decay=0.0)  # decay 0: the average is the latest weights
    avg.update(model)

    model.to(torch.float64)
    with torch.no_grad():
        model[0].weight.fill_(7.0)
    avg.update(model)
    assert torch.equal(avg.averaged_state()["0.weight"], torch.full((3, 3), 7.0))

    fresh = {k: torch.full_like(v, 3.0) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    model.load_state_dict(fresh, assign=True)
    avg.update(model)
    assert torch.equal(avg.averaged_state()["0.weight"], torch.full((3, 3), 3.0))
    assert torch.equal(avg.averaged_state()["1.running_mean"], torch.full((3,), 3.0))  # buffers too
    avg.copy_to(model)  # and the switch writes into the tensors the model holds now
    with torch.no_grad():
        model[0].weight.zero_()
    avg.copy_to(model)
    assert torch.equal(model[0].weight, torch.full((3, 3), 3.0, dtype=torch.float64))


class _Tied(nn.Module):
    """An LM's tied input and output embedding: one tensor under two names."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(5, 3)
        self.head = nn.Linear(3, 5, bias=False)
        self.head.weight = self.embed.weight


def test_every_alias_of_a_tied_tensor_carries_the_average() -> None:
    """Reported and saved weights give head.weight the average too (not the trained tensor, which loading after
    embed.weight would restore): the export, the interpolation ends and a shared run's reported state."""
    from sema_suite.method.checkpoints import reported_state

    model = _Tied()
    averager = WeightAverager(model, decay=0.5)
    averager.update(model)
    with torch.no_grad():
        model.embed.weight.add_(1.0)
    averager.update(model)
    state = averager.averaged_state()
    assert averager.aliases == {"head.weight": "embed.weight"}
    assert state["head.weight"] is state["embed.weight"]
    assert not torch.equal(state["head.weight"], model.head.weight)
    saved = averager.state_dict()
    assert set(saved["averaged"]) == {"embed.weight"}  # stored once; older files without aliases still load
    WeightAverager(_Tied(), decay=0.5).load_state_dict({k: v for k, v in saved.items() if k != "aliases"})
    checkpoint = {"state_dict": model.state_dict(), "sema_hook": {"averagers": {"job": saved}, "state_dict": "trained"}}
    reported = reported_state(checkpoint, "job", "ema")
    assert torch.equal(reported["head.weight"], state["embed.weight"])
    assert torch.equal(reported["embed.weight"], state["embed.weight"])
