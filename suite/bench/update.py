"""``suite bench ema``: time one averaging update against other EMA implementations, in the same process;
``suite bench step``: the SEMA hook's per-step work as a share of a training step.

Reference points, all on the same ResNet parameter set:
- ``flat lerp_ (floor)``: one ``lerp_`` over a single flat tensor of the same size, the memory-bandwidth
  floor any implementation over separate tensors can only approach;
- ``mmengine ExponentialMovingAverage``, ``torch AveragedModel + get_ema_multi_avg_fn``, and timm's
  ``ModelEmaV3`` when timm is installed.
Ratios, not seconds, are the result: the machines are shared, so absolute times drift between runs.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from sema_suite.method.averaging import WeightAverager

DECAY = 0.999


def _median_seconds(steps: dict[str, Callable[[], None]], repeats: int, device: str) -> dict[str, float]:
    """Round-robin over the contenders, so load from other processes hits them all alike."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    times: dict[str, list[float]] = {label: [] for label in steps}
    for round_ in range(repeats + 3):
        for label, step in steps.items():
            sync()
            start = time.perf_counter()
            step()
            sync()
            if round_ >= 3:  # the first rounds warm caches and allocators up
                times[label].append(time.perf_counter() - start)
    return {label: statistics.median(values) for label, values in times.items()}


def _contenders(model: nn.Module, device: str) -> dict[str, Callable[[], None]]:
    from mmengine.model import ExponentialMovingAverage
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    float_tensors = [t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]
    flat = torch.cat([t.detach().flatten() for t in float_tensors])
    flat_avg = flat.clone()
    ours = WeightAverager(model, decay=DECAY)
    ours.update(model)  # the first update copies; time the averaging ones
    mm = ExponentialMovingAverage(model, momentum=1 - DECAY, update_buffers=True)
    swa = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(DECAY), use_buffers=True)
    contenders = {
        "flat lerp_ (floor)": lambda: flat_avg.lerp_(flat, 1 - DECAY),
        "suite WeightAverager": lambda: ours.update(model),
        "mmengine ExponentialMovingAverage": lambda: mm.update_parameters(model),
        "torch AveragedModel (multi_avg_fn)": lambda: swa.update_parameters(model),
    }
    try:
        from timm.utils import ModelEmaV3
    except ImportError:
        return contenders
    timm_ema = ModelEmaV3(model, decay=DECAY, device=device)
    contenders["timm ModelEmaV3"] = lambda: timm_ema.update(model)
    return contenders


def bench_ema(models: list[str], device: str = "cpu", repeats: int = 30) -> dict[str, dict[str, float]]:
    """Print and return median seconds per update for each model and implementation."""
    import torchvision

    results: dict[str, dict[str, float]] = {}
    for name in models:
        model = getattr(torchvision.models, name)().to(device)
        numel = sum(t.numel() for t in (*model.parameters(), *model.buffers()) if t.is_floating_point())
        times = _median_seconds(_contenders(model, device), repeats, device)
        results[name] = times
        floor, ours = times["flat lerp_ (floor)"], times["suite WeightAverager"]
        print(f"\n{name}: {numel / 1e6:.1f}M floats, {device} ({torch.get_num_threads()} threads), "
              f"median of {repeats} updates, torch {torch.__version__}")
        print(f"  {'implementation':36s} {'ms':>8s} {'x floor':>8s} {'x suite':>8s}")
        for label, seconds in times.items():
            print(f"  {label:36s} {seconds * 1e3:8.2f} {seconds / floor:8.2f} {seconds / ours:8.2f}")
    return results


def bench_step(models: list[str], device: str = "cpu", repeats: int = 20, batch: int = 32,
               image_size: int = 64) -> dict[str, dict[str, float]]:
    """What averaging adds to a training step: a plain SGD step (forward, backward, update) on a fixed random
    batch, the same step followed by the SemaHook's per-step work (one ``WeightAverager.update``), and SEMA's
    switch (``copy_to``, once per epoch), round-robin in one process. Prints and returns median seconds and the
    overhead as a share of the plain step."""
    import torchvision

    results: dict[str, dict[str, float]] = {}
    for name in models:
        model = getattr(torchvision.models, name)(num_classes=10).to(device)
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        inputs = torch.randn(batch, 3, image_size, image_size, device=device)
        labels = torch.randint(0, 10, (batch,), device=device)
        averager = WeightAverager(model, decay=DECAY)

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(inputs), labels).backward()
            optimizer.step()

        def averaged_step() -> None:
            step()
            averager.update(model)

        times = _median_seconds({"training step": step, "step + averaging update": averaged_step,
                                 "switch (copy_to)": lambda: averager.copy_to(model)}, repeats, device)
        times["overhead"] = times["step + averaging update"] / times["training step"] - 1
        results[name] = times
        print(f"\n{name}: batch {batch} x {image_size}px, {device} ({torch.get_num_threads()} threads), "
              f"median of {repeats}, torch {torch.__version__}")
        for label in ("training step", "step + averaging update", "switch (copy_to)"):
            print(f"  {label:26s} {times[label] * 1e3:9.2f} ms  {times[label] / times['training step']:6.3f} x step")
        print(f"  averaging adds {times['overhead']:.1%} to a step (goal on CUDA: under 1%)")
    return results
