"""Pulumi entry point (``main: infra/`` in Pulumi.yaml). Everything lives in :mod:`infra.program`."""

import sys
from pathlib import Path

# Pulumi runs this folder as a script; make the repository's packages (infra, pgbouncer) importable
# even when the project is not installed into the virtualenv.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from infra.program import main  # noqa: E402

main()
