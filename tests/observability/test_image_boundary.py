"""The publisher ships in the pooler image, whose build context is only ``pgbouncer/``."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OUTSIDE_THE_IMAGE = ("lifeguard", "lambdas", "migrator", "infra", "tests")


def test_metrics_package_runs_from_a_copy_of_the_build_context(tmp_path: Path) -> None:
    context = tmp_path / "context"
    shutil.copytree(REPO / "pgbouncer", context / "pgbouncer", ignore=shutil.ignore_patterns("__pycache__"))
    check = (
        "import sys, pgbouncer.metrics, pgbouncer.metrics.publisher;"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {OUTSIDE_THE_IMAGE!r});"
        "assert not bad, bad;"
        "assert pgbouncer.metrics.__file__.startswith(sys.argv[1]), pgbouncer.metrics.__file__"
    )
    # The copy first on the path, as PYTHONPATH=/app in the image; -P: not the working directory.
    result = subprocess.run(
        [sys.executable, "-P", "-c", check, str(context)],
        env={"PYTHONPATH": str(context), "PATH": "/usr/bin:/bin"}, cwd=tmp_path, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    helped = subprocess.run(
        [sys.executable, "-P", "-m", "pgbouncer.metrics", "--help"],
        env={"PYTHONPATH": str(context), "PATH": "/usr/bin:/bin"}, cwd=tmp_path, capture_output=True, text=True,
    )
    assert helped.returncode == 0 and "EMF" in helped.stdout
