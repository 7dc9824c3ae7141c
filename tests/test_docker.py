"""The Docker image and compose file, checked without a Docker engine: what the Dockerfile installs is what the
project pins (constraints.txt, the one list of versions), its entry point is `suite`, and the compose file
parses and points at files that exist."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import yaml
from packaging.requirements import Requirement

from sema_suite.cli import parser

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
PINNED = ("torch", "torchvision", "mmcv", "mmdet", "mmengine")


def constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", f"constraints.txt pins exact versions: {line}"
            pins[req.name] = spec.version
    return pins


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    lines = [ln for ln in (DOCKER / "Dockerfile").read_text().splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in joined.splitlines() if ln.strip()]


def pip_installs() -> list[list[str]]:
    """The argument lists of every `pip install` the image runs."""
    found = []
    for op, args in instructions():
        if op == "RUN":
            command: list[str] = []
            for word in [*shlex.split(args), "&&"]:
                if word != "&&":
                    command.append(word)
                    continue
                if command[:2] == ["pip", "install"]:
                    found.append(command[2:])
                command = []
    return found


def test_constraints_pin_the_stack_and_pyproject_agrees() -> None:
    pins = constraints()
    assert set(PINNED) <= set(pins)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(r) for r in project["dependencies"]]
    requirements += [Requirement(r) for group in project["optional-dependencies"].values() for r in group]
    for req in requirements:
        if req.name in pins:  # every version range the project declares admits the pinned version
            assert req.specifier.contains(pins[req.name], prereleases=True), (str(req), pins[req.name])
        exact = [s.version for s in req.specifier if s.operator == "=="]
        assert not exact or req.name in pins, f"{req} is pinned in pyproject.toml but not in constraints.txt"


def test_setup_scripts_read_their_versions_from_constraints() -> None:
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    build_mmcv = (ROOT / "scripts" / "build_mmcv.sh").read_text()
    assert 'TORCH_SPEC=${TORCH_SPEC:-"$(pin torch) $(pin torchvision)"}' in setup
    assert "constraints.txt" in build_mmcv and "MMCV_VERSION=${MMCV_VERSION:-2" not in build_mmcv
    for script in (setup, build_mmcv):
        assert not re.search(r"\b(" + "|".join(PINNED) + r")==\d", script), "a version hard-coded in a script"


def test_dockerfile_installs_the_pinned_stack_and_the_project() -> None:
    pins = constraints()
    installs = pip_installs()
    installed = set()
    for args in installs:
        specs = [a for a in args if not a.startswith("-") and a not in ("constraints.txt", "requirements.lock")]
        for spec in specs:
            name = "sema-bench" if spec.startswith(".") else Requirement(spec).name
            installed.add(name)
            if name in pins or name == "sema-bench":
                assert spec in (name, ".[all]"), f"the Dockerfile names a version of its own: {spec}"
                assert "-c" in args and args[args.index("-c") + 1] == "constraints.txt", args
            if name == "sema-bench":  # and every dependency at the lock's version
                assert "-c" in args and "requirements.lock" in args, args
    assert {"torch", "torchvision", "sema-bench"} <= installed
    # mmcv comes from the same build script as `make setup`, which takes its version from constraints.txt
    runs = " ".join(args for op, args in instructions() if op == "RUN")
    assert "bash scripts/build_mmcv.sh" in runs and "FORCE_CUDA=1" in runs and "MMCV_VERSION" not in runs
    # ".[all]" brings every extra: mmdet (det), diffusers (gen), the dashboard, the ray and slurm backends
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = set(project["optional-dependencies"]) - {"all"}
    (everything,) = project["optional-dependencies"]["all"]
    assert set(Requirement(everything).extras) == extras


def test_dockerfile_entry_point_is_the_suite_command_and_copies_existing_paths() -> None:
    steps = instructions()
    assert steps[0][0] == "ARG" and any(op == "FROM" and "nvidia/cuda:" in args for op, args in steps)
    final_stage = steps[max(i for i, (op, _) in enumerate(steps) if op == "FROM"):]
    (entry,) = [args for op, args in final_stage if op == "ENTRYPOINT"]
    assert json.loads(entry) == ["suite"]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["suite"] == "sema_suite.cli:main"
    for op, args in steps:
        if op == "COPY" and not args.startswith("--from"):
            *sources, _ = args.split()
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: not in the build context"
    folders = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"].values()
    copied = {args.split()[0] for op, args in steps if op == "COPY"}
    assert set(folders) <= copied  # every package folder the wheel needs is copied


def _host_path(volume: str) -> tuple[Path, str, str]:
    """(host path with ${VAR:-default} defaults applied, container path, mode) of a compose bind mount."""
    host, container, *mode = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", volume).split(":")
    return (DOCKER / host).resolve(), container, (mode or ["rw"])[0]


def test_compose_runs_suite_on_a_gpu_and_the_dashboard_on_the_same_results() -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    suite, dashboard = compose["services"]["suite"], compose["services"]["dashboard"]

    build = suite["build"]
    assert (DOCKER / build["context"]).resolve() == ROOT
    assert (ROOT / build["dockerfile"]).is_file()
    assert dashboard["image"] == suite["image"]
    (device,) = suite["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]

    mounts = {name: [_host_path(v) for v in service["volumes"]] for name, service in compose["services"].items()}
    gitignored = (ROOT / ".gitignore").read_text().split()
    for host, _, _ in mounts["suite"]:  # default host folders: in the checkout, ignored by git
        assert host.parent == ROOT and f"/{host.name}/" in gitignored
    results = {container: host for host, container, _ in mounts["suite"]}
    assert results["/workspace/results"] == ROOT / "results" and results["/workspace/data"] == ROOT / "data"
    assert suite["working_dir"] == "/workspace"  # `suite run`'s default results/ and data/ are the mounts
    (shared,) = mounts["dashboard"]
    assert shared == (ROOT / "results", "/workspace/results", "ro")

    # the dashboard command is a valid `suite dashboard` command line, on the published port, for all hosts
    args = parser().parse_args(dashboard["command"])
    assert args.command == "dashboard" and args.host == "0.0.0.0"
    assert str(args.results_dir) == "/workspace/results"
    (port,) = dashboard["ports"]  # by default on the host's loopback address only; a variable exposes it
    assert re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", port) == f"127.0.0.1:{args.port}:{args.port}"
    readme = (ROOT / "README.md").read_text()
    for variable in re.findall(r"\$\{(\w+):-", port + " ".join(suite["volumes"])):
        assert f"`{variable}" in readme, f"{variable} is not documented in the README"
    assert "http://127.0.0.1:8501" in readme


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint is missing: it comes with the test extra (pip install -e '.[test]')"
    lint = subprocess.run([hadolint, "--no-color", "--config", str(DOCKER / "hadolint.yaml"), str(DOCKER / "Dockerfile")],
                          capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr


@pytest.mark.parametrize(("gigabytes", "expected"), [(4, 1), (7, 2), (1000, "cores")])
def test_mmcv_compile_jobs_follow_the_build_machines_memory(gigabytes: int, expected, tmp_path: Path) -> None:
    script = (ROOT / "scripts" / "build_mmcv.sh").read_text()
    function = re.search(r"^jobs_for_memory\(\) \{.*?^\}", script, re.DOTALL | re.MULTILINE).group(0)
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(f"MemTotal: {gigabytes * 2**20 + 1} kB\nMemAvailable: {gigabytes * 2**20} kB\n")
    # OMP_NUM_THREADS=1 (a matrix's one thread per worker) must not shrink the build: nproc would obey it
    out = subprocess.run(["bash", "-c", f"{function}\njobs_for_memory"], capture_output=True, text=True,
                         env={**os.environ, "MEMINFO": str(meminfo), "OMP_NUM_THREADS": "1"})
    cores = len(os.sched_getaffinity(0))  # the CPUs this process may run on, as nproc counts them
    assert int(out.stdout) == (cores if expected == "cores" else min(expected, cores)), out.stderr
    (arg,) = [args for op, args in instructions() if op == "ARG" and args.startswith("MAX_JOBS")]
    assert arg == "MAX_JOBS=", "the image derives its compile jobs from the build machine, not a fixed number"
