"""Where jobs run: ``local`` worker processes, tasks on a Ray cluster, or Slurm job arrays through submitit.

Every backend takes the job folders that :func:`sema_suite.running.scheduler.prepare` wrote and runs the same entry
point on each, ``python -m sema_suite.running.worker RESULTS_DIR JOB_ID``, so job ids, folders, locks and resume rules
are the same everywhere: a matrix started on one backend can be finished on another. Ray and submitit are
imported only when their backend runs (``suite --help`` stays instant).
"""

from __future__ import annotations

import argparse
import importlib.util
from typing import Protocol

from sema_suite.errors import SuiteError
from sema_suite.results.store import JobDir
from sema_suite.running.scheduler import Outcome

BACKENDS = ("local", "ray", "slurm")


class Backend(Protocol):
    def run(self, todo: list[JobDir]) -> list[Outcome]:
        """Run every job to its end (done or failed) and say how each ended."""


def add_arguments(run: argparse.ArgumentParser) -> None:
    group = run.add_argument_group("backends (where the jobs run)")
    group.add_argument("--backend", choices=BACKENDS, default="local",
                       help="local worker processes (default), a Ray cluster, or Slurm job arrays (submitit)")
    group.add_argument("--max-retries", type=int, default=3,
                       help="ray: retries of a job whose worker or node died; slurm: requeues after a time-out "
                            "(preemptions always requeue). Default: 3")
    group.add_argument("--gpus-per-job", type=int, default=1,
                       help="train each job on this many GPUs with DDP (torchrun; the preset's batch is the total, "
                            "split between them); without GPUs, that many CPU processes (gloo). det only. Default: 1")
    group.add_argument("--jobs-per-gpu", type=int, default=1,
                       help="local (with --gpus) and ray: run this many jobs on each GPU at once, for presets that use "
                            "a fraction of a large GPU (e.g. CIFAR ResNet-18 on an 80 GB card). Default: 1")
    group.add_argument("--cpus-per-job", type=int, default=1,
                       help="ray/slurm: CPU cores reserved per job (a CPU-only job uses as many threads). Default: 1")
    group.add_argument("--ray-address", default=None,
                       help="Ray cluster to join (host:port, or 'auto' for the one on this machine); "
                            "default: $RAY_ADDRESS, else start a Ray instance here")
    group.add_argument("--partition", default=None, help="slurm: partition (default: the cluster's default)")
    group.add_argument("--timeout-min", type=int, default=24 * 60,
                       help="slurm: time limit of each job in minutes; a job that reaches it is requeued and "
                            "resumes from its checkpoint. Default: 1440")
    group.add_argument("--gpus-per-node", type=int, default=1, help="slurm: GPUs per job (0: CPU jobs). Default: 1")
    group.add_argument("--array-parallelism", type=int, default=64,
                       help="slurm: at most this many jobs of the array run at once. Default: 64")
    group.add_argument("--submitit-cluster", choices=("slurm", "local", "debug"), default="slurm",
                       help="slurm: 'local' runs the same arrays on this machine with submitit's LocalExecutor "
                            "(trying a setup without a cluster)")


def _require(module: str, extra: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise SuiteError(f"the {extra} backend needs {module}: pip install 'sema-bench[{extra}]'")


def check_gpus(gpus: list[str]) -> None:
    """``--gpus`` names devices CUDA sees here: a job pinned to a missing one would run on the CPU without a word.
    (Ids other than numbers, such as GPU UUIDs, are left to CUDA; they still need a device.)"""
    import torch

    count = torch.cuda.device_count()
    missing = [gpu for gpu in gpus if (gpu.isdigit() and int(gpu) >= count) or count == 0]
    if missing:
        seen = f"{count} device(s) (ids 0-{count - 1})" if count else "no device"
        raise SuiteError(f"--gpus {','.join(gpus)}: CUDA sees {seen} on this machine, so {', '.join(missing)} is not "
                         "there. Name GPUs it sees, or leave --gpus out to run on the CPU (--workers N)")


def check_jobs_per_gpu(args: argparse.Namespace) -> int:
    """``--jobs-per-gpu``, refused where it would do nothing."""
    per_gpu = getattr(args, "jobs_per_gpu", 1)
    if per_gpu < 1:
        raise SuiteError(f"--jobs-per-gpu {per_gpu}: it must be 1 or more")
    if per_gpu > 1 and getattr(args, "gpus_per_job", 1) > 1:
        raise SuiteError("--jobs-per-gpu shares a GPU between jobs and --gpus-per-job spreads a job over GPUs: "
                         "use one of them")
    if per_gpu > 1 and args.backend == "slurm":
        raise SuiteError("--jobs-per-gpu: a Slurm array task holds whole GPUs (--gpus-per-node); share a GPU with "
                         "the local backend (--gpus) or Ray, or drop --jobs-per-gpu")
    if per_gpu > 1 and args.backend == "local" and not args.gpus:
        raise SuiteError("--jobs-per-gpu shares the GPUs named by --gpus between jobs; without --gpus there is none "
                         "to share (use --workers N for CPU workers)")
    return per_gpu


def make_backend(args: argparse.Namespace) -> Backend:
    """The backend ``suite run`` asked for, configured from its options."""
    per_gpu = check_jobs_per_gpu(args)
    if args.backend == "ray":
        _require("ray", "ray")
        from sema_suite.running.backends.ray_backend import RayBackend

        return RayBackend(args.ray_address, max_retries=args.max_retries, cpus_per_job=args.cpus_per_job,
                          jobs_per_gpu=per_gpu, gpus_per_job=getattr(args, "gpus_per_job", 1))
    if args.backend == "slurm":
        _require("submitit", "slurm")
        from sema_suite.running.backends.slurm import SlurmBackend

        return SlurmBackend(cluster=args.submitit_cluster, partition=args.partition, timeout_min=args.timeout_min,
                            gpus_per_node=max(args.gpus_per_node, getattr(args, "gpus_per_job", 1)),
                            cpus_per_job=args.cpus_per_job,
                            array_parallelism=args.array_parallelism, max_requeues=args.max_retries)
    from sema_suite.running.backends.local import LocalBackend

    per_job = getattr(args, "gpus_per_job", 1)
    if args.gpus:
        check_gpus(args.gpus)
        if len(args.gpus) % per_job:
            raise SuiteError(f"--gpus {','.join(args.gpus)} does not split into jobs of --gpus-per-job {per_job}: "
                             "name a multiple of it")
    return LocalBackend(gpus=args.gpus, workers=args.workers, jobs_per_gpu=per_gpu, gpus_per_job=per_job)
