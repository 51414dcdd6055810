"""The baseline's environment: the PyPI package `sippy` in a virtual environment of its own.

sippy is a baseline, not a dependency of Callplane, so it lives in a separate venv created on demand
under a cache directory (`.bench-venv/` at the repository root by default, git-ignored).
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VENV_DIR = REPO_ROOT / ".bench-venv"
SIPPY_REQUIREMENT = "sippy>=2.0"  # 2.x ships the `b2bua` entry point with --static_route
PIP_TIMEOUT_S = 600  # a cold install on a slow mirror; the bench has nothing to do meanwhile


class SippyEnvError(RuntimeError):
    """The baseline's venv could not be created or sippy could not be installed in it."""


def sippy_b2bua(venv_dir: Path = DEFAULT_VENV_DIR) -> Path:
    """Return the path of sippy's `b2bua` program, creating the venv and installing sippy first."""
    program = venv_dir / "bin" / "b2bua"
    if program.exists():
        return program
    python = venv_dir / "bin" / "python"
    if not python.exists():
        venv.EnvBuilder(with_pip=True, clear=False).create(venv_dir)
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", SIPPY_REQUIREMENT],
        capture_output=True,
        text=True,
        timeout=PIP_TIMEOUT_S,
        check=False,
    )
    if result.returncode != 0 or not program.exists():
        raise SippyEnvError(f"pip install {SIPPY_REQUIREMENT} failed: {result.stderr[-2000:]}")
    return program


if __name__ == "__main__":
    sys.stdout.write(f"{sippy_b2bua()}\n")
