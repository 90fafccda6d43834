"""The component provider's entry point for the Pulumi CLI (``PulumiPlugin.yaml``, ``runtime: python``).

Pulumi's Python language host runs a plugin folder that has a ``__main__.py`` as ``python <folder>
<engine address> ...``; this starts :mod:`lifeguard.aws.provider` (docs/provider.md).
"""

import sys
from pathlib import Path

# Run as a script: make this checkout's packages importable even when lifeguard is not installed.
_ROOT = str(Path(__file__).resolve().parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from lifeguard.aws.provider import main  # noqa: E402

main(sys.argv[1:])
