"""``python -m lifeguard.cli``: the ``lifeguard`` command without its console script."""

import sys

from lifeguard.cli import main

sys.exit(main())
