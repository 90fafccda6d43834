"""The product's `reports` function (a container image, Python): one row of monthly totals, through the pooler.

The image holds the pooler's CA at the path ``PooledClient.ca_path`` documents (the Dockerfile writes it
there from the ``POOLER_CA_PEM`` build argument), which is the ``sslrootcert`` of the pooled URL.
"""

import json
import os
from typing import Any

import boto3
import psycopg

_connection: "psycopg.Connection[Any] | None" = None


def handler(event: dict[str, Any], _context: object) -> dict[str, Any]:
    global _connection
    if _connection is None or _connection.closed:
        secret = boto3.client("secretsmanager").get_secret_value(SecretId=os.environ["DATABASE_URL_SECRET_ARN"])
        prepared = os.environ.get("LIFEGUARD_POOLER_PREPARED_STATEMENTS") == "1"
        _connection = psycopg.connect(secret["SecretString"], autocommit=True,
                                      prepare_threshold=5 if prepared else None)
    with _connection.transaction(), _connection.cursor() as cursor:
        cursor.execute("SELECT date_trunc('month', now()), count(*), coalesce(sum(total), 0) FROM orders "
                       "WHERE created_at >= date_trunc('month', now())")
        month, orders, total = cursor.fetchone() or (None, 0, 0)
    return {"statusCode": 200, "body": json.dumps({"month": str(month), "orders": orders, "total": str(total)})}
