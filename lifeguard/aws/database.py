"""RDS Postgres: private, encrypted, TLS forced, an explicit ``max_connections``, a generated password.

``max_connections`` is set in the parameter group rather than left to RDS's memory formula, so
the pool sizing arithmetic (``pgbouncer.sizing``) works from a number known at preview.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from lifeguard.aws.config import DatabaseConfig
from lifeguard.aws.naming import RDS_INSTANCE, stack_name
from lifeguard.aws.secrets import generated_password

# The CA whose roots are in the RDS global bundle the images verify against.
RDS_CA_IDENTIFIER = "rds-ca-rsa2048-g1"


@dataclass(frozen=True)
class DatabaseArgs:
    subnet_ids: pulumi.Input[Sequence[pulumi.Input[str]]]
    security_group_id: pulumi.Input[str]
    settings: DatabaseConfig
    final_snapshot: bool
    """Take a final snapshot when the instance is deleted (production stacks)."""
    region: str
    log_retention_days: int
    """Of the ``postgresql`` log group, which the stack creates (and deletes) rather than RDS."""


class Database(pulumi.ComponentResource):
    address: pulumi.Output[str]
    """The endpoint's DNS name (the name on its certificate, needed for verify-full)."""
    port: pulumi.Output[int]
    arn: pulumi.Output[str]
    identifier: pulumi.Output[str]
    password: pulumi.Output[str]
    """The generated master password; a Pulumi secret."""

    def __init__(self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("lifeguard:database:Database", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        cfg = args.settings
        major = cfg.postgres_major_version

        password = generated_password(f"{name}-password", child)
        subnet_group = aws.rds.SubnetGroup(
            f"{name}-subnets",
            subnet_ids=args.subnet_ids,
            description="Private subnets of the lifeguard database",
            opts=child,
        )
        parameters = aws.rds.ParameterGroup(
            f"{name}-params",
            family=f"postgres{major}",
            description=f"lifeguard: explicit max_connections ({cfg.max_connections}), TLS only",
            parameters=[
                # Static parameter: takes effect at the next reboot (the first boot on create).
                {"name": "max_connections", "value": str(cfg.max_connections), "apply_method": "pending-reboot"},
                {"name": "rds.force_ssl", "value": "1", "apply_method": "immediate"},
                {"name": "password_encryption", "value": "scram-sha-256", "apply_method": "immediate"},
            ],
            opts=child,
        )
        final_snapshot_id: pulumi.Input[str] | None = None
        if args.final_snapshot:
            # Unique per stack life, so destroying a recreated stack does not collide with an old snapshot.
            suffix = random.RandomId(f"{name}-final-snapshot-suffix", byte_length=4, opts=child)
            final_snapshot_id = suffix.hex.apply(lambda hex_id: f"{name}-final-{hex_id}")
        # Named by the stack (unique per account and region) so that the log group RDS exports to can be
        # created first, with the stack's retention, and is deleted with the stack; left to RDS it would
        # have no retention and outlive `pulumi destroy`.
        identifier = stack_name(RDS_INSTANCE, name, region=args.region)
        postgres_logs = aws.cloudwatch.LogGroup(
            f"{name}-postgresql-logs",
            name=f"/aws/rds/instance/{identifier}/postgresql",
            retention_in_days=args.log_retention_days,
            opts=child,
        )
        instance = aws.rds.Instance(
            f"{name}-postgres",
            identifier=identifier,
            engine="postgres",
            engine_version=str(major),
            instance_class=cfg.instance_class,
            allocated_storage=cfg.allocated_storage_gb,
            max_allocated_storage=cfg.max_allocated_storage_gb or None,
            storage_type="gp3",
            storage_encrypted=True,
            db_name=cfg.db_name,
            username=cfg.username,
            password=password.result,
            parameter_group_name=parameters.name,
            db_subnet_group_name=subnet_group.name,
            vpc_security_group_ids=[args.security_group_id],
            publicly_accessible=False,
            multi_az=cfg.multi_az,
            deletion_protection=cfg.deletion_protection,
            apply_immediately=cfg.apply_immediately,
            backup_retention_period=cfg.backup_retention_days,
            copy_tags_to_snapshot=True,
            skip_final_snapshot=not args.final_snapshot,
            final_snapshot_identifier=final_snapshot_id,
            auto_minor_version_upgrade=True,
            # Changing postgresMajorVersion is then an in-place upgrade (with downtime), not an error.
            allow_major_version_upgrade=True,
            ca_cert_identifier=RDS_CA_IDENTIFIER,
            enabled_cloudwatch_logs_exports=["postgresql"],
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[postgres_logs],
                # As the NLB's (see the pooler): `pulumi destroy` of a protected stack stops before it
                # deletes anything, and a change that would replace the instance fails at preview.
                protect=cfg.deletion_protection,
                # Instances created before the identifier was explicit keep their generated one instead of
                # being replaced (a new, empty database); their log group stays RDS's, as before.
                ignore_changes=["identifier"],
            ),
        )

        self.address = instance.address
        self.port = instance.port
        self.arn = instance.arn
        self.identifier = instance.identifier
        self.password = pulumi.Output.secret(password.result)
        self.register_outputs({"address": self.address, "port": self.port, "arn": self.arn})
