"""The product's `orders` function (a zip, Python): counts a customer's orders through the pooler.

One connection per instance, opened on the first call and reused while warm; the pooler does the pooling.
Through a transaction-mode pooler a client keeps no session state and prepares no statements unless the
stack says the pooler tracks them (``LIFEGUARD_POOLER_PREPARED_STATEMENTS=1``, from ``PooledClient``'s
environment). The URL is read from the secret named by ``DATABASE_URL_SECRET_ARN``, never from the
environment; its ``sslrootcert`` is the pooler's CA, which the CA layer puts at that path.

Vendor psycopg into this folder before ``pulumi up`` (the command is in this example's README.md).
"""

import json
import os
from typing import Any

import boto3
import psycopg

_connection: "psycopg.Connection[Any] | None" = None


def _connect() -> "psycopg.Connection[Any]":
    secret = boto3.client("secretsmanager").get_secret_value(SecretId=os.environ["DATABASE_URL_SECRET_ARN"])
    prepared = os.environ.get("LIFEGUARD_POOLER_PREPARED_STATEMENTS") == "1"
    return psycopg.connect(secret["SecretString"], autocommit=True, prepare_threshold=5 if prepared else None)


def handler(event: dict[str, Any], _context: object) -> dict[str, Any]:
    global _connection
    if _connection is None or _connection.closed:
        _connection = _connect()
    with _connection.transaction(), _connection.cursor() as cursor:
        cursor.execute("SET LOCAL statement_timeout = '5s'")  # LOCAL: nothing outlives the transaction
        cursor.execute("SELECT count(*) FROM orders WHERE customer_id = %s", (event["customer_id"],))
        (count,) = cursor.fetchone() or (0,)
    return {"statusCode": 200, "body": json.dumps({"orders": count})}
