"""The invoker's pieces that need no server: worker planning, error extraction, environments."""

from __future__ import annotations

import pytest

from lambdas.contract import PREPARED_ENV
from lifeguard.load.invoker import database_error, split, worker_env
from lifeguard.load.spike import MAX_INSTANCES_PER_WORKER, percentile, plan_workers


@pytest.mark.parametrize(("total", "parts", "expected"), [
    (10, 3, [4, 3, 3]), (2, 5, [1, 1]), (0, 2, [0]), (7, 1, [7]),
])
def test_split(total: int, parts: int, expected: list[int]) -> None:
    assert split(total, parts) == expected


def test_plan_keeps_descriptors_below_fd_setsize_and_in_flight_bounded() -> None:
    plan = plan_workers(10000, workers=2, threads=48)
    assert sum(n for n, _ in plan) == 10000
    assert all(n <= MAX_INSTANCES_PER_WORKER < 1024 for n, _ in plan)
    # Still about workers * threads cold starts in flight, however many processes host them.
    assert 96 <= sum(t for _, t in plan) < 96 + len(plan)
    assert plan_workers(500, workers=2, threads=48) == [(250, 48), (250, 48)]
    assert plan_workers(3, workers=2, threads=48) == [(2, 2), (1, 1)]


def test_database_error_is_the_servers_words() -> None:
    line = ('database connect failed: overloaded (OperationalError [no sqlstate]: connection failed: connection '
            'to server at "127.0.0.1", port 5432 failed: FATAL:  sorry, too many clients already)')
    assert database_error(line) == "FATAL: sorry, too many clients already"
    transport = ('database connect failed: unreachable (OperationalError [no sqlstate]: connection failed: '
                 'connection to server at "127.0.0.1", port 1 failed: Connection refused)')
    assert database_error(transport) == "Connection refused"
    assert database_error(None) is None


def test_worker_env_gives_instances_only_their_url() -> None:
    env = worker_env("postgresql://u:p@h:1/d", "read_invoices", base={
        "PATH": "/bin", "DATABASE_URL_UNPOOLED": "x", "PGPASSWORD": "y", "DATABASE_URL": "z",
    })
    assert env == {
        "PATH": "/bin", "DATABASE_URL": "postgresql://u:p@h:1/d", "AWS_LAMBDA_FUNCTION_NAME": "read_invoices",
    }


def test_worker_env_carries_what_the_stack_tells_functions_not_what_we_inherited() -> None:
    inherited = worker_env("postgresql://u:p@h:1/d", None, base={PREPARED_ENV: "1"})
    assert PREPARED_ENV not in inherited
    told = worker_env("postgresql://u:p@h:1/d", None, base={PREPARED_ENV: "0"}, client={PREPARED_ENV: "1"})
    assert told[PREPARED_ENV] == "1"


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([], 50) is None
