"""Follow one CloudWatch Logs stream while it is being written, printing each event once.

Hand-written rather than a waiter or `aws logs tail`: it must interleave with the ECS polling in
one loop, and the stream does not exist until the container has started.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_logs import CloudWatchLogsClient

# A safety valve: one poll reads at most this many pages and resumes from there on the next.
MAX_PAGES_PER_POLL = 50


class LogFollower:
    def __init__(self, logs: CloudWatchLogsClient, group: str, stream: str) -> None:
        self._logs = logs
        self.group = group
        self.stream = stream
        self._token: str | None = None
        self.stream_seen = False

    def poll(self) -> list[str]:
        """The messages written since the last poll; none while the stream does not exist yet."""
        messages: list[str] = []
        for _ in range(MAX_PAGES_PER_POLL):
            try:
                if self._token is None:
                    page = self._logs.get_log_events(
                        logGroupName=self.group, logStreamName=self.stream, startFromHead=True
                    )
                else:
                    page = self._logs.get_log_events(
                        logGroupName=self.group, logStreamName=self.stream, startFromHead=True,
                        nextToken=self._token,
                    )
            except ClientError as exc:
                # Until the container starts, the stream (or, on a first deploy, the group) is not there.
                if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                    return messages
                raise
            self.stream_seen = True
            messages.extend(event.get("message", "").rstrip("\n") for event in page.get("events", []))
            token = page.get("nextForwardToken")
            # CloudWatch hands back the token it was given once the end is reached; pages in between
            # may be empty, so an empty page alone does not mean the end.
            if token is None or token == self._token:
                break
            self._token = token
        return messages
