"""#12.11: a changed database password reaches warm function instances.

For real: Postgres gets a new password, PgBouncer restarts with it (what the stack's rolled pooler
tasks do), the secret gets the new URL (moto), and an instance that read the old URL reads the
secret once more after its login is refused, instead of failing until Lambda recycles it.
"""

from __future__ import annotations

import json
import signal

import boto3
import pytest
from psycopg import sql

from lambdas import read_invoices
from lambdas.db import Database
from tests.lambdas.support import REGION, CountingSecrets, Ledger
from tests.support import RunningPooler

NEW_PASSWORD = "rotated-Pa55word-for-the-test"


def set_password(pooler: RunningPooler, password: str) -> None:
    with pooler.db.cluster.connect_superuser() as conn:
        conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(pooler.db.user), sql.Literal(password)))


def restart_pooler(pooler: RunningPooler, password: str) -> None:
    pooler.process.stop(signal.SIGQUIT, timeout=10)
    pooler.process.start({pooler.db.user: password})


@pytest.mark.usefixtures("aws")
def test_a_warm_instance_reads_the_secret_again_after_a_password_change(pooler: RunningPooler,
                                                                        ledger: Ledger) -> None:
    secrets = boto3.client("secretsmanager", region_name=REGION)
    arn = secrets.create_secret(Name="lifeguard/DATABASE_URL", SecretString=pooler.url())["ARN"]
    counter = CountingSecrets()
    instance = Database(env={"DATABASE_URL_SECRET_ARN": arn}, secrets_client_factory=counter)
    acme = ledger.org_id("acme")
    try:
        assert read_invoices.handle({"org_id": acme}, instance)["statusCode"] == 200
        set_password(pooler, NEW_PASSWORD)
        restart_pooler(pooler, NEW_PASSWORD)
        secrets.put_secret_value(SecretId=arn, SecretString=pooler.url(password=NEW_PASSWORD))

        # The warm connection died with the restart; the reconnect with the old URL is refused, the
        # instance reads the secret again and the invocation succeeds.
        assert read_invoices.handle({"org_id": acme}, instance)["statusCode"] == 200
        assert (counter.calls, instance.stats.secret_fetches) == (2, 2)

        # A secret that is still wrong is read once more per connect, then reported, not looped on.
        instance.close()
        set_password(pooler, pooler.db.password)
        restart_pooler(pooler, pooler.db.password)
        response = read_invoices.handle({"org_id": acme}, instance)
        assert response["statusCode"] == 503
        assert json.loads(response["body"])["reason"] == "authentication_failed"
        assert counter.calls == 3
    finally:
        instance.close()
        set_password(pooler, pooler.db.password)
