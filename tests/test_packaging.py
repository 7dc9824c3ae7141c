"""The installed import names are the project's own (sema_suite, sema_tasks, sema_dashboard): installing PyPI's
unrelated `suite`, `tasks` or `dashboard` beside sema-bench can neither overwrite nor shadow them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {"suite": "sema_suite", "tasks": "sema_tasks", "dashboard": "sema_dashboard"}


def test_every_package_folder_is_installed_under_its_prefixed_name() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["package-dir"] == FOLDERS.__class__((v, k) for k, v in FOLDERS.items())
    folders = {str(p.parent.relative_to(ROOT)).replace("/", ".") for name in FOLDERS
               for p in (ROOT / name).rglob("__init__.py") if "__pycache__" not in p.parts}
    installed = {FOLDERS[f.split(".")[0]] + f[len(f.split(".")[0]):] for f in folders}
    assert set(setuptools["packages"]) == installed  # a new subpackage must be listed to be installed


def test_outside_the_checkout_only_the_prefixed_names_exist(tmp_path: Path) -> None:
    code = ("import importlib.util as u, sema_suite.cli, sema_tasks.cls, sema_dashboard.tables; "
            "print([n for n in ('suite', 'tasks', 'dashboard') if u.find_spec(n)])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"  # nothing installed under the short names
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"] == {"suite": "sema_suite.cli:main"}  # the command keeps its name
    from sema_suite.registry import ENTRY_POINT_GROUP

    assert ENTRY_POINT_GROUP == "suite.tasks"  # and plugins their entry-point group
