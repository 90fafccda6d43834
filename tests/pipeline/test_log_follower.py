"""Following a CloudWatch Logs stream: not there yet, then growing, each event printed once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from lifeguard.deploy.log_follower import LogFollower
from redaction import redact
from tests.pipeline.support import REGION

if TYPE_CHECKING:
    from mypy_boto3_logs import CloudWatchLogsClient

GROUP = "/lifeguard/migration"
STREAM = "migrate/migrator/0f1e2d3c"


def put(logs: CloudWatchLogsClient, *messages: str) -> None:
    now = int(time.time() * 1000)
    logs.put_log_events(
        logGroupName=GROUP, logStreamName=STREAM,
        logEvents=[{"timestamp": now + i, "message": m} for i, m in enumerate(messages)])


def test_follows_a_stream_that_appears_later_and_grows(moto_aws: None) -> None:
    logs = boto3.client("logs", region_name=REGION)
    follower = LogFollower(logs, GROUP, STREAM)
    # No group yet (a first deploy), then no stream yet (the container has not started): both tolerated.
    assert follower.poll() == []
    logs.create_log_group(logGroupName=GROUP)
    assert follower.poll() == []
    assert not follower.stream_seen
    logs.create_log_stream(logGroupName=GROUP, logStreamName=STREAM)
    assert follower.poll() == []
    assert follower.stream_seen
    put(logs, "one\n", "two")
    assert follower.poll() == ["one", "two"]
    assert follower.poll() == []
    put(logs, "three")
    assert follower.poll() == ["three"]


@pytest.fixture
def stubbed_logs(aws_env: None) -> Iterator[tuple[LogFollower, Stubber]]:
    client = boto3.client("logs", region_name=REGION)
    with Stubber(client) as stubber:
        yield LogFollower(client, GROUP, STREAM), stubber
        stubber.assert_no_pending_responses()


def page(messages: list[str], token: str) -> dict[str, object]:
    return {"events": [{"timestamp": 1, "message": m, "ingestionTime": 2} for m in messages],
            "nextForwardToken": token, "nextBackwardToken": "b/0"}


def test_empty_pages_in_the_middle_do_not_end_the_read(stubbed_logs: tuple[LogFollower, Stubber]) -> None:
    follower, stubber = stubbed_logs
    base = {"logGroupName": GROUP, "logStreamName": STREAM, "startFromHead": True}
    # CloudWatch may answer an empty page while more events follow; only a repeated token is the end.
    stubber.add_response("get_log_events", page(["a"], "f/1"), base)
    stubber.add_response("get_log_events", page([], "f/2"), {**base, "nextToken": "f/1"})
    stubber.add_response("get_log_events", page(["b"], "f/3"), {**base, "nextToken": "f/2"})
    stubber.add_response("get_log_events", page([], "f/3"), {**base, "nextToken": "f/3"})
    assert follower.poll() == ["a", "b"]
    # The next poll resumes from where the last one ended.
    stubber.add_response("get_log_events", page(["c"], "f/4"), {**base, "nextToken": "f/3"})
    stubber.add_response("get_log_events", page([], "f/4"), {**base, "nextToken": "f/4"})
    assert follower.poll() == ["c"]


def test_other_errors_are_not_swallowed(stubbed_logs: tuple[LogFollower, Stubber]) -> None:
    follower, stubber = stubbed_logs
    stubber.add_client_error("get_log_events", "AccessDeniedException", "not authorized to perform logs:GetLogEvents")
    with pytest.raises(ClientError, match="AccessDeniedException"):
        follower.poll()


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("dial postgresql://app:s3cr%22et%40x@db:5432/app?sslmode=require",
         "dial postgresql://app:***@db:5432/app?sslmode=require"),
        ("raw postgres://u:pa@ss@host/db", "raw postgres://u:***@host/db"),
        ("host=db password='a b\\' c' dbname=app", "host=db password=*** dbname=app"),
        ("PASSWORD=hunter2 next", "PASSWORD=*** next"),
        ("see https://docs.aws.amazon.com/x and http://host:8080/path", "see https://docs.aws.amazon.com/x and "
         "http://host:8080/path"),
        ("mail admin@example.com", "mail admin@example.com"),
    ],
)
def test_printed_lines_mask_credentials(line: str, expected: str) -> None:
    assert redact(line) == expected
