"""`make install` and the optional gtk extra: a failed optional build is retried, never recorded as done."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FAKE_PYTHON = """#!/bin/sh
echo "$*" >> "{calls}"
case "$*" in *gtk*) [ -f "{dev_packages}" ] || {{ echo "error: PyGObject needs girepository" >&2; exit 1; }} ;; esac
exit 0
"""


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_failed_gtk_extra_is_retried_until_it_installs(tmp_path: Path) -> None:
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / "pyproject.toml").write_text("")
    calls, dev_packages = tmp_path / "calls", tmp_path / "dev-packages-installed"
    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(FAKE_PYTHON.format(calls=calls, dev_packages=dev_packages))
    python.chmod(0o755)

    def make() -> str:
        out = subprocess.run(["make", "install", "VENV=venv", "PYTHON=true"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr  # the optional extra never fails the install
        return out.stdout + out.stderr

    def gtk_attempts() -> int:
        return sum(1 for line in calls.read_text().splitlines() if "[gtk]" in line)

    assert "PyGObject not installed" in make()
    assert (tmp_path / "venv" / ".installed").exists()
    assert not (tmp_path / "venv" / ".installed-gtk").exists()
    make()
    assert gtk_attempts() == 2, "the failed optional install is tried again"
    dev_packages.touch()  # the user installs the system packages PyGObject builds against
    make()
    assert (tmp_path / "venv" / ".installed-gtk").exists() and gtk_attempts() == 3
    assert "Nothing to be done" in make() and gtk_attempts() == 3
