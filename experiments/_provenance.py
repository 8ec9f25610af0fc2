"""Where an experiment's numbers came from: versions, the git commit, the machine's load."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def provenance() -> dict[str, Any]:
    """nasbench/torch/python versions, the short git commit (and whether the tree had edits), the 1-min load."""
    import torch

    import nasbench

    status = _git("status", "--porcelain")
    return {"nasbench": nasbench.__version__, "git": _git("rev-parse", "--short", "HEAD") or None,
            "git_dirty": None if status is None else bool(status), "torch": torch.__version__,
            "python": platform.python_version(), "load_avg_1min": round(os.getloadavg()[0], 2)}
