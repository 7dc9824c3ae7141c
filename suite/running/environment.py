"""What a job ran on, recorded in job.json so a result can be traced back to its software and hardware."""

from __future__ import annotations

import hashlib
import os
import platform
import socket
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

LOCK_ENV = "SEMA_BENCH_LOCK"  # where an installed copy keeps requirements.lock (the Docker image sets it)
PACKAGES = ("torch", "torchvision", "mmengine", "mmcv", "mmdet", "diffusers", "torchmetrics", "numpy", "sema-bench")


def package_versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def git_commit(path: Path = Path(__file__).resolve().parent) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def code_hash() -> str:
    """A short hash of the suite's and the task adapters' source (every .py file, by path and content): the code
    state a job ran, recorded even where there is no git checkout (an installed wheel, the Docker image)."""
    import sema_suite
    import sema_tasks

    digest = hashlib.sha256()
    for package in (sema_suite, sema_tasks):
        root = Path(package.__file__).resolve().parent
        for path in sorted(root.rglob("*.py")):
            digest.update(f"{package.__name__}/{path.relative_to(root)}\n".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def lock_file() -> Path | None:
    """The requirements.lock this installation came from: ``$SEMA_BENCH_LOCK``, else the checkout's."""
    path = Path(os.environ.get(LOCK_ENV) or Path(__file__).resolve().parents[2] / "requirements.lock")
    return path if path.is_file() else None


def lock_hash() -> str | None:
    """A short hash of the lock's pins (comments left out), so jobs produced under different locks are told apart."""
    path = lock_file()
    if path is None:
        return None
    pins = [line for line in path.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return hashlib.sha256("\n".join(pins).encode()).hexdigest()[:16]


def environment() -> dict[str, object]:
    return {"python": platform.python_version(), "platform": platform.platform(), "host": socket.gethostname(),
            "packages": package_versions(), "git_commit": git_commit(), "code": code_hash(), "lock": lock_hash()}


def device_info() -> dict[str, object]:
    """Filled in by the worker, which imports torch anyway."""
    import torch

    if torch.cuda.is_available():
        return {"device": "cuda", "gpu": torch.cuda.get_device_name(0), "cuda": torch.version.cuda}
    return {"device": "cpu", "threads": torch.get_num_threads()}
