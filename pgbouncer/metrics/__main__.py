"""``python -m pgbouncer.metrics``: the metrics sidecar of the pooler task."""

import sys

from pgbouncer.metrics.publisher import main

sys.exit(main())
