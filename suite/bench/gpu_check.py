"""``suite gpu-check`` (``make gpu-check``): every paper preset trained for a few dozen iterations with none, ema
and sema (and sema in bf16, and det on two processes with DDP, where the GPUs allow), on stand-in data of the
real shapes (:mod:`sema_suite.bench.stand_ins`: no dataset needed), through the same config, hooks and loop as
``suite run``. It prints, per preset and case: training steps per second (data loading excluded: the step is
timed from the batch's arrival to the end of its hooks, after a CUDA sync), peak memory, the averaging hook's
share of the training time (host time), each case's step time against ``none``, and whether the switch fired;
and, after the ``sema`` case, one ``suite analyze`` measurement of its weights (Hessian, sharpness; 4 batches on
CUDA as the default settings, 1 on a CPU), with its time and peak memory, since the Hessian-vector products are
what runs out of memory first on the large presets.

Each preset runs in a process of its own (its cases one after another; a crash stays there); a DDP case under
torchrun. Without CUDA it runs the presets on the CPU at a small batch and says what it skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

RESULT = "GPU-CHECK-RESULT "  # prefix of a case's result line on a preset process's stdout
CPU_BATCH = 2  # per step on a CPU, where the presets' batches would take minutes a step
KEPT_HOOKS = ("SemaHook", "CostHook", "RandomStateHook")


@dataclass(frozen=True)
class Case:
    task: str
    preset: str
    method: str
    amp: str = "none"
    world_size: int = 1

    @property
    def label(self) -> str:
        extras = [self.amp] if self.amp != "none" else []
        extras += [f"ddp x{self.world_size}"] if self.world_size > 1 else []
        return self.method + (f" ({', '.join(extras)})" if extras else "")


def paper_presets(selected: list[str]) -> list[tuple[str, str]]:
    """(task, preset) of every paper preset, or of ``selected`` (``task/preset`` or ``task``)."""
    from sema_suite.errors import SuiteError
    from sema_suite.registry import get_task, task_names

    every = [(name, preset) for name in task_names() for preset, p in get_task(name).presets.items() if not p.offline]
    if not selected:
        return every
    chosen = [(t, p) for t, p in every if f"{t}/{p}" in selected or t in selected]
    unknown = [s for s in selected if not any(s in (t, f"{t}/{p}") for t, p in every)]
    if unknown:
        raise SuiteError(f"--presets {','.join(unknown)}: not a paper preset; choose from "
                         + ", ".join(f"{t}/{p}" for t, p in every))
    return chosen


def plan(presets: list[tuple[str, str]], gpus: int) -> tuple[list[list[Case]], list[str]]:
    """The cases of each preset (run in one process), and what is skipped on this machine, with why."""
    from sema_suite.registry import get_task

    groups, skipped = [], []
    for task, preset in presets:
        cases = [Case(task, preset, method) for method in ("none", "ema", "sema")]
        if gpus:
            cases.append(Case(task, preset, "sema", amp="bf16"))
        else:
            skipped.append(f"{task}/{preset} sema (bf16): mixed precision needs CUDA")
        if get_task(task).multi_gpu:
            if gpus >= 2:
                cases.append(Case(task, preset, "sema", world_size=2))
            else:
                skipped.append(f"{task}/{preset} sema (ddp x2): needs 2 GPUs, CUDA sees {gpus}")
        groups.append(cases)
    return groups, skipped


def _overrides(case: Case, iters: int, batch_size: int | None) -> tuple[tuple[str, Any], ...]:
    from sema_suite.registry import get_task

    preset = get_task(case.task).presets[case.preset]
    knobs = preset.knobs
    chosen: dict[str, Any] = {"amp": case.amp} if case.amp != "none" else {}
    if "val_size" in knobs:
        chosen["val_size"] = 0  # nothing to hold out: the check trains only
    if batch_size is not None and "batch_size" in knobs:
        chosen["batch_size"] = batch_size * case.world_size
    if case.method == "sema":  # switch twice within the check, whatever the preset's schedule
        chosen |= {"switch_interval_iters": max(1, iters // 2), "switch_start": 1}
    return tuple(sorted(chosen.items()))


def _training_only(cfg, iters: int) -> None:
    """The preset's config cut to ``iters`` training iterations: no evaluation, checkpoint or results hook, a
    constant learning rate (the schedules span the real run), and no pretrained weights to download."""
    cfg.train_cfg = {"type": "IterBasedTrainLoop", "max_iters": iters, "val_interval": iters + 1}
    cfg.param_scheduler = []
    _drop_pretrained(cfg.model)
    for kind in ("val", "test"):
        for part in ("dataloader", "cfg", "evaluator"):
            cfg[f"{kind}_{part}"] = None
    cfg.default_hooks.checkpoint = {"type": "CheckpointHook", "interval": iters + 1, "by_epoch": False,
                                    "save_last": False}
    cfg.custom_hooks = [h for h in cfg.custom_hooks if h["type"] in KEPT_HOOKS]
    cfg.log_processor = {"by_epoch": False}
    cfg.resume = False


def _drop_pretrained(part: Any) -> None:
    """Remove every ``init_cfg`` that loads pretrained weights (e.g. MMDetection's torchvision ResNet-50)."""
    if isinstance(part, dict):
        if isinstance(part.get("init_cfg"), dict) and part["init_cfg"].get("type") == "Pretrained":
            part["init_cfg"] = None
        for value in part.values():
            _drop_pretrained(value)
    elif isinstance(part, list):
        for value in part:
            _drop_pretrained(value)


def run_case(case: Case, iters: int, batch_size: int | None, data_root: Path, work: Path) -> dict[str, Any]:
    """Train one case in this process; its measurements."""
    import torch
    from mmengine.hooks import Hook
    from mmengine.runner import Runner

    from sema_suite.bench.stand_ins import torchvision_stand_ins
    from sema_suite.method.hooks import SemaHook
    from sema_suite.running.config import build_config
    from sema_suite.running.costs import ledger_of
    from sema_suite.running.jobs import JobSpec

    cuda = torch.cuda.is_available()

    class StepClock(Hook):
        """Each training step's time, from the batch's arrival to the end of its hooks (CUDA synced)."""

        priority = "LOWEST"

        def __init__(self) -> None:
            self.steps: list[float] = []

        def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
            if cuda:
                torch.cuda.synchronize()
            self.started = time.perf_counter()

        def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
            if cuda:
                torch.cuda.synchronize()
            self.steps.append(time.perf_counter() - self.started)

    overrides = _overrides(case, iters, batch_size)
    job = JobSpec(case.task, case.preset, case.method, 0, overrides, case.world_size).resolve()
    with torchvision_stand_ins():
        cfg = build_config(job, job.context(data_root, work / job.job_id), work / "results")
        _training_only(cfg, iters)
        cfg.experiment_name = f"gpu-check-{job.job_id}-{case.amp}-{os.getpid()}-{time.time_ns()}"
        runner = Runner.from_cfg(cfg)
        clock = StepClock()
        runner.register_hook(clock)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        runner.train()
    warm = clock.steps[max(1, len(clock.steps) // 5):] or clock.steps  # cuDNN autotuning, allocator warm-up
    ledger = ledger_of(runner)
    sema = next((h for h in runner.hooks if isinstance(h, SemaHook)), None)
    plain_sema = case.method == "sema" and case.amp == "none" and case.world_size == 1
    analysis = _analysis(runner, job, cuda) if plain_sema else None
    return {**asdict(case), "label": case.label, "iters": len(clock.steps), "analysis": analysis,
            "batch_size": cfg.train_dataloader.batch_size * case.world_size,
            "step_s": sum(warm) / len(warm), "steps_per_s": len(warm) / sum(warm),
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
            "hook_share": ledger.seconds["averaging"] / ledger.seconds["train"] if sema else None,
            "switches": sema.counts(job.job_id)["switches"] if sema and case.method == "sema" else None}


def _analysis(runner, job, cuda: bool) -> dict[str, Any]:
    """One measurement of the job's reported weights, as ``suite analyze`` makes it: seconds and peak memory, or
    the error."""
    import torch

    from sema_suite.analysis.measure import Settings, measure

    settings = Settings(batches=4 if cuda else 1, trace_samples=2, steps=1, average_samples=2, directions=1,
                        points=3)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    try:
        values, _ = measure(runner, job.task, settings, job.job_id, landscape=False)
    except Exception as err:  # noqa: BLE001  (a finding to report, like a case that fails)
        return {"error": f"{type(err).__name__}: {err}"}
    return {"seconds": time.perf_counter() - started, "batches": settings.batches, "measures": len(values),
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None}


def _preset_process(cases: list[Case], iters: int, batch_size: int | None, data_root: Path, work: Path) -> None:
    """Run ``cases`` (one preset's) here, printing each result; a DDP case runs under torchrun."""
    from sema_suite.running.worker import RANK, process_group

    for case in cases:
        try:
            with process_group():
                result = run_case(case, iters, batch_size, data_root, work)
        except Exception as err:  # noqa: BLE001  (one case failing is a finding; the others still run)
            result = {**asdict(case), "label": case.label, "error": f"{type(err).__name__}: {err}"}
        if RANK == 0:
            print(RESULT + json.dumps(result), flush=True)


def check(presets: list[tuple[str, str]], iters: int | None, batch_size: int | None, log=sys.stderr) -> tuple[list[dict[str, Any]], list[str], dict[str, Any]]:
    """Run the check; returns each case's result, what was skipped, and the device it ran on."""
    import torch

    from sema_suite.bench.stand_ins import write_files
    from sema_suite.registry import get_task
    from sema_suite.running.environment import device_info

    gpus = torch.cuda.device_count()
    iters = iters or (30 if gpus else 3)
    batch_size = batch_size if batch_size is not None or gpus else CPU_BATCH
    groups, skipped = plan(presets, gpus)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="sema-gpu-check-") as scratch:
        datasets = {get_task(task).presets[preset].dataset for task, preset in presets}
        root = write_files(Path(scratch) / "data", datasets)
        env = {**os.environ, "SEMA_CACHE_DIR": str(Path(scratch) / "cache")}  # stand-in caches stay out of the user's
        for cases in groups:
            for world_size in sorted({c.world_size for c in cases}):
                part = [c for c in cases if c.world_size == world_size]
                print(f"gpu-check: {part[0].task}/{part[0].preset}: {', '.join(c.label for c in part)}", file=log)
                launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone",
                             f"--nproc-per-node={world_size}"] if world_size > 1 else [sys.executable])
                spec = json.dumps({"cases": [asdict(c) for c in part], "iters": iters, "batch_size": batch_size,
                                   "data_root": str(root), "work": str(Path(scratch) / "work")})
                done = subprocess.run([*launcher, "-m", "sema_suite.bench.gpu_check", spec], env=env,
                                      capture_output=True, text=True)
                found = [json.loads(line[len(RESULT):]) for line in done.stdout.splitlines() if line.startswith(RESULT)]
                for case in part[len(found):]:  # the process died before reporting these
                    found.append({**asdict(case), "label": case.label,
                                  "error": f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}"})
                results += found
    return results, skipped, device_info()


def report(results: list[dict[str, Any]], skipped: list[str], device: dict[str, Any]) -> str:
    """The table ``suite gpu-check`` prints."""
    lines = [f"device: {', '.join(f'{k} {v}' for k, v in device.items())}; stand-in data of the presets' shapes",
             f"{'preset':<26} {'case':<18} {'batch':>5} {'steps/s':>8} {'peak GiB':>8} {'hook %':>7} {'vs none':>8} "
             f"{'switched':>8}"]
    none_step = {(r["task"], r["preset"]): r["step_s"] for r in results
                 if r["method"] == "none" and "error" not in r and r["world_size"] == 1}
    for r in results:
        name = f"{r['task']}/{r['preset']}"
        if "error" in r:
            lines.append(f"{name:<26} {r['label']:<18} FAILED: {r['error']}")
            continue
        base = none_step.get((r["task"], r["preset"]))
        ratio = f"{r['step_s'] / base:.3f}x" if base and r["method"] != "none" and r["world_size"] == 1 else "-"
        lines.append(
            f"{name:<26} {r['label']:<18} {r['batch_size']:>5} {r['steps_per_s']:>8.2f} "
            f"{_or_dash(r['peak_gib'], '.2f'):>8} {_or_dash(r['hook_share'] and 100 * r['hook_share'], '.2f'):>7} "
            f"{ratio:>8} {_switched(r):>8}")
    for r in results:
        if (analysis := r.get("analysis")) is not None:
            measured = (f"FAILED: {analysis['error']}" if "error" in analysis else
                        f"{analysis['measures']} measures on {analysis['batches']} batch(es) in {analysis['seconds']:.1f} s, "
                        f"peak {_or_dash(analysis['peak_gib'], '.2f')} GiB")
            lines.append(f"analysis {r['task']}/{r['preset']} ({r['label']}): {measured}")
    lines += [f"skipped: {s}" for s in skipped]
    return "\n".join(lines)


def _or_dash(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _switched(result: dict[str, Any]) -> str:
    if result["switches"] is None:
        return "-"
    return f"yes ({result['switches']})" if result["switches"] else "NO"


if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    _preset_process([Case(**c) for c in spec["cases"]], spec["iters"], spec["batch_size"], Path(spec["data_root"]),
                    Path(spec["work"]))
