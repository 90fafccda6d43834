"""AWS's part played locally, so the pipeline can run against the real migrator and the real functions.

* :class:`LocalFargate` hooks an ECS client (moto's): RunTask starts ``python -m migrator`` (or the
  command a container override gives) on this machine with the URL ECS would inject from Secrets
  Manager, its output is written to the task's CloudWatch Logs stream as the awslogs driver would,
  and DescribeTasks reports the process's real state and exit code (moto alone never runs anything
  and always reports 0).
* :class:`LocalLambda` hooks a Lambda client: Invoke runs the handler in-process, as the Lambda
  runtime would, and answers like Lambda does, ``FunctionError`` included.

Both use botocore's event hooks on one client, so the code under test makes its real calls.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
import traceback
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders
from botocore.response import StreamingBody

from database_urls import DIRECT_URL_ENV, DIRECT_URL_SECRET_ARN_ENV, POOLED_URL_ENV
from lifeguard.deploy.outputs import MigrationTarget

if TYPE_CHECKING:
    from mypy_boto3_ecs import ECSClient
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_logs import CloudWatchLogsClient

# Variables the migrator must not see from the test's own environment.
_DATABASE_VARS = (POOLED_URL_ENV, DIRECT_URL_ENV, DIRECT_URL_SECRET_ARN_ENV)


class LocalFargate:
    def __init__(self, ecs: ECSClient, logs: CloudWatchLogsClient, target: MigrationTarget,
                 direct_url: str, workdir: Path) -> None:
        self.logs = logs
        self.target = target
        self.direct_url = direct_url
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None
        self._output_path = workdir / "container-output.log"
        self._offset = 0
        self._stream = ""
        self._command: list[str] | None = None
        ecs.meta.events.register("provide-client-params.ecs.RunTask", self._take_override)
        ecs.meta.events.register("after-call.ecs.RunTask", self._run_task)
        ecs.meta.events.register("after-call.ecs.DescribeTasks", self._describe_tasks)
        ecs.meta.events.register("after-call.ecs.StopTask", self._stop_task)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def _take_override(self, params: dict[str, Any], **_: Any) -> None:
        """A ``containerOverrides`` command for the migrator container replaces the image's, as on ECS."""
        for override in params.get("overrides", {}).get("containerOverrides", []):
            if override.get("name") == self.target.container_name and "command" in override:
                self._command = list(override["command"])

    def _argv(self) -> list[str]:
        # The image's python3 is this machine's interpreter here.
        command = self._command or ["python3", "-m", "migrator"]
        return [sys.executable if command[0] == "python3" else command[0], *command[1:]]

    def _run_task(self, parsed: dict[str, Any], **_: Any) -> None:
        task_id = parsed["tasks"][0]["taskArn"].rsplit("/", 1)[-1]
        self._stream = self.target.log_stream_name(task_id)
        env = {k: v for k, v in os.environ.items() if k not in _DATABASE_VARS}
        env[DIRECT_URL_ENV] = self.direct_url
        with self._output_path.open("wb") as output:
            self.process = subprocess.Popen(
                self._argv(), env=env, cwd=self.workdir,
                stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )

    def _describe_tasks(self, parsed: dict[str, Any], **_: Any) -> None:
        assert self.process is not None, "DescribeTasks before RunTask"
        exit_code = self.process.poll()
        self._ship_logs()
        task = parsed["tasks"][0]
        container = next(c for c in task["containers"] if c["name"] == self.target.container_name)
        if exit_code is None:
            task["lastStatus"] = container["lastStatus"] = "RUNNING"
            container.pop("exitCode", None)
        else:
            task["lastStatus"] = container["lastStatus"] = "STOPPED"
            task["stopCode"] = "EssentialContainerExited"
            task["stoppedReason"] = "Essential container in task exited"
            container["exitCode"] = exit_code

    def _stop_task(self, **_: Any) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()

    def _ship_logs(self) -> None:
        """Copy the output's new complete lines to the task's log stream, as awslogs does."""
        data = self._output_path.read_bytes()[self._offset:]
        complete = data[: data.rfind(b"\n") + 1]
        if not complete:
            return
        self._offset += len(complete)
        group = self.target.log_group_name
        if not self.logs.describe_log_streams(logGroupName=group, logStreamNamePrefix=self._stream)["logStreams"]:
            self.logs.create_log_stream(logGroupName=group, logStreamName=self._stream)
        now = int(time.time() * 1000)
        # Empty lines are dropped, as the awslogs driver drops them (CloudWatch refuses an empty message).
        lines = [line for line in complete.decode("utf-8", "replace").splitlines() if line]
        if not lines:
            return
        self.logs.put_log_events(logGroupName=group, logStreamName=self._stream,
                                 logEvents=[{"timestamp": now + i, "message": line} for i, line in enumerate(lines)])


Handler = Callable[[object], dict[str, Any]]


class LocalLambda:
    def __init__(self, client: LambdaClient, handlers: dict[str, Handler]) -> None:
        self.handlers = handlers
        self.invocations: list[tuple[str, Any]] = []
        # botocore's stubs type handlers as returning None; a before-call handler may return a response.
        client.meta.events.register("before-call.lambda.Invoke", self._invoke)  # type: ignore[arg-type]

    def _invoke(self, params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        # `params` is the serialized request, as Lambda receives it: the name in the path, the event as body.
        match = re.fullmatch(r"/2015-03-31/functions/([^/]+)/invocations", params["url_path"])
        assert match is not None, params["url_path"]
        name = urllib.parse.unquote(match.group(1))
        event = json.loads(params["body"])
        self.invocations.append((name, event))
        response: dict[str, Any] = {"StatusCode": 200, "ExecutedVersion": "$LATEST",
                                    "ResponseMetadata": {"HTTPStatusCode": 200, "HTTPHeaders": {}}}
        try:
            result: Any = self.handlers[name](event)
        except Exception as exc:
            # What the Lambda runtime returns for an exception the handler did not catch.
            result = {"errorType": type(exc).__name__, "errorMessage": str(exc),
                      "stackTrace": traceback.format_tb(exc.__traceback__)}
            response["FunctionError"] = "Unhandled"
        raw = json.dumps(result).encode()
        response["Payload"] = StreamingBody(io.BytesIO(raw), len(raw))
        # Returning (http response, parsed) from before-call answers the call without sending it,
        # as botocore's Stubber does.
        return AWSResponse(f"https://lambda.local/{name}", 200, HTTPHeaders(), None), response
