"""Call Lambda handlers as the runtime does: ``handler(event, context)``, code imported from /var/task only.

Run with ``python3 -I -S`` (no site-packages, no user site, no PYTHON* variables) and the zip's
contents mounted read-only at /var/task. Argument: JSON list of ``[handler, event]``; prints one
JSON document with the responses and where psycopg was loaded from.
"""

import importlib
import json
import sys
import uuid

sys.path[:0] = ["/var/task"]


class Context:
    """The attributes of Lambda's context object that code commonly reads."""

    function_name = "lifeguard-zip-test"
    memory_limit_in_mb = 256

    def __init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


responses = []
for handler, event in json.loads(sys.argv[1]):
    module, function = handler.rsplit(".", 1)
    responses.append(getattr(importlib.import_module(module), function)(event, Context()))

import psycopg  # noqa: E402 (loaded by the handlers above; imported here to report where from)

print(json.dumps({
    "responses": responses,
    "psycopg_impl": psycopg.pq.__impl__,
    "psycopg_file": psycopg.__file__,
    "python": f"python{sys.version_info[0]}.{sys.version_info[1]}",
    "path": sys.path,
}))
