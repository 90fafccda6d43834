"""After a successful run, record which password rotation's verifiers Postgres now holds.

On AWS the stack switches ``DATABASE_URL`` to a rotated login role only when this record says Postgres
holds that rotation's verifier (``lifeguard.aws.rotation.check_switch``, docs/roles.md): the pooler got
the verifier from ``pulumi up``, Postgres only from this job, and a switch before the job set it would
refuse every new login. So the record is written after the run's work is committed (the roles'
verifiers, the migrations, a wrapped tool's exit 0), never on a failure, and a failed write fails the
run (exit 7): a switch is never allowed on a state nobody knows.

Configuration (the job's environment, both or neither): :data:`~migrator.contract.ROTATION_PARAMETER_ENV`
(the SSM parameter the stack created) and :data:`~migrator.contract.ROTATION_ENV` (the rotation whose
verifiers the job was given). The value is a number: nothing secret is written or logged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from migrator.contract import APP_ROLE_ENV, ROTATION_ENV, ROTATION_PARAMETER_ENV
from migrator.errors import MigratorConfigError, Unavailable
from migrator.roles import AppRole

log = logging.getLogger("migrator")


@dataclass(frozen=True)
class RotationRecord:
    parameter: str
    """The SSM parameter's name."""
    rotation: int


def rotation_record_from_env(environ: Mapping[str, str], app_role: AppRole | None) -> RotationRecord | None:
    """What a successful run records, or ``None`` when neither variable is set. Checked before the run starts."""
    parameter = environ.get(ROTATION_PARAMETER_ENV, "").strip()
    value = environ.get(ROTATION_ENV, "").strip()
    if not parameter and not value:
        return None
    if not parameter or not value:
        missing = ROTATION_PARAMETER_ENV if not parameter else ROTATION_ENV
        raise MigratorConfigError(f"{missing} is not set; recording the password rotation needs both "
                                  f"{ROTATION_PARAMETER_ENV} and {ROTATION_ENV}")
    if not value.isdigit():
        raise MigratorConfigError(f"{ROTATION_ENV} must be a whole number (the stack's appPasswordRotation), "
                                  f"got {value!r}")
    if app_role is None:
        # Without the roles this run sets no verifier: recording a rotation would claim what it did not do.
        raise MigratorConfigError(f"{ROTATION_PARAMETER_ENV} is set but {APP_ROLE_ENV} is not: a run that sets no "
                                  "application role's verifier cannot record a password rotation")
    return RotationRecord(parameter, int(value))


def record_rotation(record: RotationRecord, client: Any = None) -> None:
    """Write ``record.rotation`` into the parameter; :class:`Unavailable` (exit 7) when AWS refuses.

    ``client``: an SSM client (tests pass moto's or a Stubber's); by default boto3's, in the task's region.
    """
    import boto3  # only on this path: it costs a few hundred ms to import
    from botocore.exceptions import BotoCoreError, ClientError

    failed = (f"the roles and migrations are done, but recording password rotation {record.rotation} in SSM "
              f"parameter {record.parameter} failed")
    advice = ("so the stack keeps refusing to switch DATABASE_URL to it. Check that the migration task's role may "
              "call ssm:PutParameter on that parameter, then run the migration job again")
    try:
        # The task's region: ECS sets AWS_REGION and AWS_DEFAULT_REGION in every Fargate container.
        ssm = client if client is not None else boto3.client("ssm")
        ssm.put_parameter(Name=record.parameter, Value=str(record.rotation), Type="String", Overwrite=True)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise Unavailable(f"{failed} ({code}), {advice}") from None
    except BotoCoreError as exc:
        raise Unavailable(f"{failed} ({type(exc).__name__}: {exc}), {advice}") from None
    log.info("recorded in %s: Postgres holds password rotation %d's verifiers", record.parameter, record.rotation)
