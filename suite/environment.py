"""What a job ran on, recorded in job.json so a result can be traced back to its software and hardware."""

from __future__ import annotations

import platform
import socket
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

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


def environment() -> dict[str, object]:
    return {"python": platform.python_version(), "platform": platform.platform(), "host": socket.gethostname(),
            "packages": package_versions(), "git_commit": git_commit()}


def device_info() -> dict[str, object]:
    """Filled in by the worker, which imports torch anyway."""
    import torch

    if torch.cuda.is_available():
        return {"device": "cuda", "gpu": torch.cuda.get_device_name(0), "cuda": torch.version.cuda}
    return {"device": "cpu", "threads": torch.get_num_threads()}
