"""The Node.js function under real Node.js (the dev install's, the major its Lambda runtime runs): one
process is one Lambda instance, driven over stdin/stdout by :class:`NodeInstance`."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from lambdas.api import Response
from tests.support import NODE, NODE_PATH_ENV

RUNNER = Path(__file__).with_name("node_instance.mjs")
REPLY_TIMEOUT_S = 60


class NodeInstance:
    """A Node.js function instance: its module loaded once, one Database (connection) kept while warm."""

    def __init__(self, folder: Path, env: Mapping[str, str], module: str = "read_invoices") -> None:
        self.logs: list[dict[str, Any]] = []
        self.output: list[str] = []
        self.process = subprocess.Popen(
            [str(NODE), str(RUNNER), str(folder), module],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
            env={"PATH": NODE_PATH_ENV, **env},
        )

    def _request(self, message: Mapping[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()
        while True:
            line = self.process.stdout.readline()
            if not line:
                self.process.wait(timeout=REPLY_TIMEOUT_S)
                stderr = self.process.stderr.read() if self.process.stderr else ""
                raise AssertionError(f"the Node.js instance exited ({self.process.returncode}): {stderr[-2000:]}")
            self.output.append(line)
            parsed: dict[str, Any] = json.loads(line)
            if parsed.get("type") == "result":
                return parsed
            self.logs.append(parsed)

    def invoke(self, event: object) -> Response:
        """The handler body with this instance's Database: the response (statusCode, body)."""
        reply = self._request({"op": "invoke", "event": event})
        assert "response" in reply, reply
        return cast(Response, reply["response"])

    def handler(self, event: object) -> Response:
        """The module's Lambda entry point (its own module-level instance)."""
        reply = self._request({"op": "handler", "event": event})
        assert "response" in reply, reply
        return cast(Response, reply["response"])

    def stats(self) -> dict[str, int]:
        stats: dict[str, int] = self._request({"op": "stats"})["stats"]
        return stats

    def close(self) -> str:
        """Stop the instance; everything it wrote (stdout and stderr), for secrecy checks."""
        stdout, stderr = self.process.communicate(timeout=REPLY_TIMEOUT_S)
        return "".join(self.output) + stdout + stderr
