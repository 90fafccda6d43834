"""The stack outputs the pipeline needs, from ``pulumi stack output --json`` or a saved copy of it.

Their names are the program's own (:mod:`lifeguard.aws.outputs`, standard library only).

Values are checked whole before anything runs on AWS, and every problem names the output to fix.
Messages never quote a value: run with ``--show-secrets``, a file could hold secrets, and none of
the outputs read here should be secret in the first place.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TextIO

from lambdas.json_types import json_type
from lifeguard.aws import outputs as output_names

# What ``pulumi stack output --json`` prints in place of a secret output without --show-secrets.
SECRET_PLACEHOLDER = "[secret]"  # noqa: S105  (a placeholder, not a password)
# Long enough for a slow backend login; a hung CLI must not hold the pipeline forever.
PULUMI_TIMEOUT_SECONDS = 120.0


class OutputsError(Exception):
    """The outputs could not be read or are not what the pipeline needs; the message says what to do."""


class _ArnShape(NamedTuple):
    """What an ARN output must look like (its region a named group), and what to say when it does not."""

    pattern: re.Pattern[str]
    problem: str

    def region(self, arn: str) -> str:
        match = self.pattern.match(arn)
        if match is None:
            raise OutputsError(self.problem)
        return match.group("region")


_CLUSTER_ARN = _ArnShape(
    re.compile(r"^arn:aws[a-z-]*:ecs:(?P<region>[a-z0-9-]+):\d{12}:cluster/[A-Za-z0-9_-]+$"),
    f"{output_names.MIGRATION_CLUSTER_ARN} must be an ECS cluster ARN (arn:aws:ecs:REGION:ACCOUNT:cluster/NAME)",
)
_TASK_DEFINITION_ARN = _ArnShape(
    re.compile(r"^arn:aws[a-z-]*:ecs:(?P<region>[a-z0-9-]+):\d{12}:task-definition/[A-Za-z0-9_-]{1,255}:[1-9]\d*$"),
    f"{output_names.POOLER_TASK_DEFINITION_ARN} must be an ECS task-definition ARN with its revision "
    "(arn:aws:ecs:REGION:ACCOUNT:task-definition/FAMILY:REVISION)",
)


def load_stack_outputs(
    stack: str, *, pulumi: str = "pulumi", timeout: float = PULUMI_TIMEOUT_SECONDS
) -> dict[str, Any]:
    """Run ``pulumi stack output --json --stack STACK`` and parse what it prints."""
    argv = [pulumi, "stack", "output", "--json", "--stack", stack]
    shown = f"`pulumi stack output --json --stack {stack}`"
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout)
    except FileNotFoundError:
        raise OutputsError(
            f"the Pulumi CLI ({pulumi!r}) is not installed or not on PATH: install it "
            "(https://www.pulumi.com/docs/install/), or save the outputs elsewhere with "
            "`pulumi stack output --json > outputs.json` and pass --outputs outputs.json"
        ) from None
    except subprocess.TimeoutExpired:
        raise OutputsError(
            f"{shown} did not finish within {timeout:g} s; check `pulumi whoami` and the network"
        ) from None
    if done.returncode != 0:
        # Pulumi's own error (no such stack, not logged in) is the useful part; it never holds secret values.
        detail = done.stderr.strip() or done.stdout.strip() or "no output"
        raise OutputsError(f"{shown} failed with exit code {done.returncode}: {detail}")
    return parse_outputs(done.stdout, describe_stack(stack))


def load_outputs_file(path: str, *, stdin: TextIO | None = None) -> dict[str, Any]:
    """Read saved ``pulumi stack output --json`` from ``path``, or from standard input when it is ``-``."""
    if path == "-":
        return parse_outputs((stdin or sys.stdin).read(), describe_file(path))
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise OutputsError(
            f"outputs file {path!r} does not exist; save it with `pulumi stack output --json > {path}`"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise OutputsError(f"cannot read outputs file {path!r}: {exc.__class__.__name__}") from None
    return parse_outputs(text, describe_file(path))


def describe_stack(stack: str) -> str:
    return f"stack {stack!r}"


def describe_file(path: str) -> str:
    """How messages name where outputs were read from."""
    return "standard input" if path == "-" else f"file {path!r}"


def parse_outputs(text: str, source: str) -> dict[str, Any]:
    if not text.strip():
        raise OutputsError(f"the outputs from {source} are empty; has the stack been deployed with `pulumi up`?")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        # Position only: the document itself may hold secrets.
        raise OutputsError(
            f"the outputs from {source} are not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            "they must be what `pulumi stack output --json` prints"
        ) from None
    if not isinstance(document, dict):
        raise OutputsError(
            f"the outputs from {source} must be a JSON object of output names, not {json_type(document)}; "
            "they must be what `pulumi stack output --json` prints"
        )
    return document


class _Fields:
    """Reads typed fields from the outputs, collecting every problem so one run reports them all."""

    def __init__(self, outputs: Mapping[str, Any]) -> None:
        self._outputs = outputs
        self.problems: list[str] = []

    def text(self, key: str) -> str:
        value = self._outputs.get(key)
        if key not in self._outputs:
            self.problems.append(f"{key} is missing")
        elif value == SECRET_PLACEHOLDER:
            self.problems.append(f"{key} is a secret output; it must be a plain (non-secret) output")
        elif not isinstance(value, str) or not value.strip():
            self.problems.append(f"{key} must be a non-empty string, not {json_type(value)}")
        else:
            return value
        return ""

    def optional_text(self, key: str) -> str | None:
        """A text output that stacks deployed before it was added do not have (None), else as :meth:`text`."""
        return self.text(key) if key in self._outputs else None

    def arn(self, key: str, shape: _ArnShape) -> str:
        value = self.text(key)
        if value and not shape.pattern.match(value):
            self.problems.append(shape.problem)
        return value

    def text_list(self, key: str) -> tuple[str, ...]:
        value = self._outputs.get(key)
        if key not in self._outputs:
            self.problems.append(f"{key} is missing")
        elif value == SECRET_PLACEHOLDER:
            self.problems.append(f"{key} is a secret output; it must be a plain (non-secret) output")
        elif not isinstance(value, list) or not value:
            self.problems.append(f"{key} must be a non-empty list of strings, not {json_type(value)}")
        else:
            bad = [item for item in value if not isinstance(item, str) or not item.strip()]
            if not bad:
                return tuple(value)
            self.problems.append(f"{key} must be a non-empty list of strings; it holds {json_type(bad[0])}")
        return ()

    def check(self, source: str) -> None:
        if self.problems:
            listed = "\n".join(f"  - {problem}" for problem in self.problems)
            raise OutputsError(
                f"the outputs from {source} are not usable:\n{listed}\n"
                "Deploy the stack with lifeguard's infra program (`pulumi up`) and point at that stack."
            )


@dataclass(frozen=True)
class MigrationTarget:
    """Where and how to run the migration task, from the stack outputs."""

    cluster_arn: str
    task_definition_arn: str
    container_name: str
    subnet_ids: tuple[str, ...]
    security_group_ids: tuple[str, ...]
    log_group_name: str
    log_stream_prefix: str

    @classmethod
    def from_outputs(cls, outputs: Mapping[str, Any], source: str) -> MigrationTarget:
        fields = _Fields(outputs)
        target = cls(
            cluster_arn=fields.arn(output_names.MIGRATION_CLUSTER_ARN, _CLUSTER_ARN),
            task_definition_arn=fields.text(output_names.MIGRATION_TASK_DEFINITION_ARN),
            container_name=fields.text(output_names.MIGRATION_CONTAINER_NAME),
            subnet_ids=fields.text_list(output_names.MIGRATION_SUBNET_IDS),
            security_group_ids=fields.text_list(output_names.MIGRATION_SECURITY_GROUP_IDS),
            log_group_name=fields.text(output_names.MIGRATION_LOG_GROUP_NAME),
            log_stream_prefix=fields.text(output_names.MIGRATION_LOG_STREAM_PREFIX),
        )
        fields.check(source)
        return target

    @property
    def region(self) -> str:
        """The cluster's region: the task, its logs and the cluster all live there."""
        return _CLUSTER_ARN.region(self.cluster_arn)

    def log_stream_name(self, task_id: str) -> str:
        # The awslogs driver's naming: <awslogs-stream-prefix>/<container name>/<ECS task id>.
        return f"{self.log_stream_prefix}/{self.container_name}/{task_id}"


@dataclass(frozen=True)
class SmokeTarget:
    """The deployed sample functions, from the stack outputs."""

    read_function: str
    charge_function: str
    node_read_function: str | None = None
    """The Node.js read_invoices; None for a stack deployed before it existed."""

    @classmethod
    def from_outputs(cls, outputs: Mapping[str, Any], source: str) -> SmokeTarget:
        # A stack of the program with `sampleFunctions: false` exports its client but no sample function.
        samples = outputs.keys() & output_names.SAMPLE_FUNCTION_OUTPUTS
        if output_names.CLIENT_SECURITY_GROUP_ID in outputs and not samples:
            raise OutputsError(
                f"the outputs from {source} name no sample functions: the stack runs with "
                "`lifeguard:sampleFunctions false`. Smoke a function of yours instead: "
                "`lifeguard smoke --function NAME_OR_ARN --payload JSON|@FILE` (optionally --expect-status N and "
                "--expect POINTER JSON; see `lifeguard smoke --help`). In the deploy workflows, set the variables "
                "LIFEGUARD_SMOKE_FUNCTION and LIFEGUARD_SMOKE_PAYLOAD (docs/pipeline.md)."
            )
        fields = _Fields(outputs)
        target = cls(
            read_function=fields.text(output_names.READ_INVOICES_FUNCTION_NAME),
            charge_function=fields.text(output_names.CHARGE_CREDITS_FUNCTION_NAME),
            node_read_function=fields.optional_text(output_names.READ_INVOICES_NODE_FUNCTION_NAME),
        )
        fields.check(source)
        return target


@dataclass(frozen=True)
class PoolerRolloutTarget:
    """The pooler's ECS service and the task definition ``pulumi up`` last gave it, from the stack outputs."""

    cluster_name: str
    service_name: str
    task_definition_arn: str

    @classmethod
    def from_outputs(cls, outputs: Mapping[str, Any], source: str) -> PoolerRolloutTarget:
        fields = _Fields(outputs)
        target = cls(
            cluster_name=fields.text(output_names.POOLER_CLUSTER_NAME),
            service_name=fields.text(output_names.POOLER_SERVICE_NAME),
            task_definition_arn=fields.arn(output_names.POOLER_TASK_DEFINITION_ARN, _TASK_DEFINITION_ARN),
        )
        fields.check(source)
        return target

    @property
    def region(self) -> str:
        """The task definition's region, which is the service's."""
        return _TASK_DEFINITION_ARN.region(self.task_definition_arn)


def add_outputs_arguments(parser: argparse.ArgumentParser) -> argparse._MutuallyExclusiveGroup:
    """``--stack NAME`` or ``--outputs FILE|-``: where a pipeline command gets the stack outputs.

    One of the group is required; it is returned so a command can add its own alternative to them."""
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument(
        "--stack", metavar="NAME", help="read the outputs with `pulumi stack output --json --stack NAME`"
    )
    group.add_argument(
        "--outputs",
        metavar="FILE",
        help="read saved `pulumi stack output --json` from FILE ('-' for standard input)",
    )
    return group


def outputs_from_args(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """The outputs chosen by :func:`add_outputs_arguments`, and a description of where they came from."""
    if args.stack is not None:
        return load_stack_outputs(args.stack), describe_stack(args.stack)
    return load_outputs_file(args.outputs), describe_file(args.outputs)


