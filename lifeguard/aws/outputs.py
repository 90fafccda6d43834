"""The stack's output names: what ``pulumi stack output`` shows (README, "Stack outputs"), and what the
pipeline commands read from it.

Read by both sides: the Pulumi program exports under these names (``infra.program``), the pipeline
(``lifeguard.deploy.outputs``) reads them. Standard library only, and importing nothing: the
pipeline's base install has no pulumi (so ``infra/__init__.py`` stays empty too).
"""

from __future__ import annotations

VPC_ID = "vpcId"
POOLER_ENDPOINT = "poolerEndpoint"
POOLER_PORT = "poolerPort"
POOLER_CA_CERTIFICATE = "poolerCaCertificate"
POOLER_CA_LAYER_ARN = "poolerCaLayerArn"
POOLER_CA_PATH = "poolerCaPath"
POOLER_CERTIFICATE_EXPIRY = "poolerCertificateExpiry"
DATABASE_ENDPOINT = "databaseEndpoint"
DATABASE_PORT = "databasePort"
DATABASE_IDENTIFIER = "databaseIdentifier"
DATABASE_SETTINGS = "databaseSettings"
"""The database settings AWS cannot change in place, read back by the next preview (``lifeguard.aws.deployed``)."""
POOLED_SECRET_ARN = "pooledSecretArn"  # noqa: S105 (an output name)
DIRECT_SECRET_ARN = "directSecretArn"  # noqa: S105 (an output name)
"""Only when the stack holds the database owner's password (a new instance with a generated one)."""
DATABASE_OWNER_SECRET_ARN = "databaseOwnerSecretArn"  # noqa: S105 (an output name)
"""Instead of :data:`DIRECT_SECRET_ARN`: the owner secret the migration task reads at run time (an existing
database's, or RDS's managed master secret)."""
POOLER_SECRET_ARN = "poolerSecretArn"  # noqa: S105 (an output name)
POOLER_STATS_SECRET_ARN = "poolerStatsSecretArn"  # noqa: S105 (an output name)
POOL_SIZE = "poolSize"
MAX_CONNECTIONS = "maxConnections"
POOLER_CLUSTER_NAME = "poolerClusterName"
POOLER_SERVICE_NAME = "poolerServiceName"
POOLER_TASK_DEFINITION_ARN = "poolerTaskDefinitionArn"
POOLER_LOG_GROUP_NAME = "poolerLogGroupName"
POOLER_METRICS_SERVICE = "poolerMetricsService"
DASHBOARD_NAME = "dashboardName"
READ_INVOICES_FUNCTION_NAME = "readInvoicesFunctionName"
READ_INVOICES_FUNCTION_ARN = "readInvoicesFunctionArn"
CHARGE_CREDITS_FUNCTION_NAME = "chargeCreditsFunctionName"
CHARGE_CREDITS_FUNCTION_ARN = "chargeCreditsFunctionArn"
READ_INVOICES_NODE_FUNCTION_NAME = "readInvoicesNodeFunctionName"
READ_INVOICES_NODE_FUNCTION_ARN = "readInvoicesNodeFunctionArn"
MIGRATION_CLUSTER_ARN = "migrationClusterArn"
MIGRATION_TASK_DEFINITION_ARN = "migrationTaskDefinitionArn"
MIGRATION_CONTAINER_NAME = "migrationContainerName"
MIGRATION_SUBNET_IDS = "migrationSubnetIds"
MIGRATION_SECURITY_GROUP_IDS = "migrationSecurityGroupIds"
MIGRATION_LOG_GROUP_NAME = "migrationLogGroupName"
MIGRATION_LOG_STREAM_PREFIX = "migrationLogStreamPrefix"
MIGRATION_EXECUTION_ROLE_ARN = "migrationExecutionRoleArn"
MIGRATION_TASK_ROLE_ARN = "migrationTaskRoleArn"
"""The migration task's role (it records the password rotation it set): ``ecs:RunTask`` passes it too."""
ALARM_TOPIC_ARN = "alarmTopicArn"
"""Only when the stack notifies a topic (``alarmEmail`` or ``alarmTopicArn``)."""
# What a separate stack needs to attach its own functions (lifeguard.aws.client.pooled_client_args_from_stack).
PRIVATE_SUBNET_IDS = "privateSubnetIds"
POOLER_SECURITY_GROUP_ID = "poolerSecurityGroupId"
"""The group in front of the pooler (the NLB's): a client's ingress rule goes into it."""
POOLER_QUERY_WAIT_TIMEOUT_SECONDS = "poolerQueryWaitTimeoutSeconds"
POOLER_PREPARED_STATEMENTS = "poolerPreparedStatements"
CLIENT_SECURITY_GROUP_ID = "clientSecurityGroupId"
"""The stack's own client group (already let into the pooler): attach it as it is."""
POOLED_SECRET_POLICY_ARN = "pooledSecretPolicyArn"  # noqa: S105 (an output name)
"""The managed policy that reads the pooled secret and nothing else: attach it to a function's role."""
ENDPOINTS_SECURITY_GROUP_ID = "endpointsSecurityGroupId"
"""Only when the stack's VPC has interface endpoints (``awsApiAccess: endpoints``)."""

STACK_OUTPUTS = frozenset({
    VPC_ID, POOLER_ENDPOINT, POOLER_PORT, POOLER_CA_CERTIFICATE, POOLER_CA_LAYER_ARN, POOLER_CA_PATH,
    POOLER_CERTIFICATE_EXPIRY, DATABASE_ENDPOINT, DATABASE_PORT, DATABASE_IDENTIFIER, DATABASE_SETTINGS,
    POOLED_SECRET_ARN, POOLER_SECRET_ARN, POOLER_STATS_SECRET_ARN, POOL_SIZE, MAX_CONNECTIONS,
    POOLER_CLUSTER_NAME, POOLER_SERVICE_NAME, POOLER_TASK_DEFINITION_ARN, POOLER_LOG_GROUP_NAME,
    POOLER_METRICS_SERVICE, DASHBOARD_NAME, MIGRATION_CLUSTER_ARN, MIGRATION_TASK_DEFINITION_ARN,
    MIGRATION_CONTAINER_NAME, MIGRATION_SUBNET_IDS, MIGRATION_SECURITY_GROUP_IDS, MIGRATION_LOG_GROUP_NAME,
    MIGRATION_LOG_STREAM_PREFIX, MIGRATION_EXECUTION_ROLE_ARN, MIGRATION_TASK_ROLE_ARN, PRIVATE_SUBNET_IDS,
    POOLER_SECURITY_GROUP_ID, POOLER_QUERY_WAIT_TIMEOUT_SECONDS, POOLER_PREPARED_STATEMENTS, CLIENT_SECURITY_GROUP_ID,
    POOLED_SECRET_POLICY_ARN,
})
"""Every output every stack exports; the ones below come on top when the stack has what they name."""

SAMPLE_FUNCTION_OUTPUTS = frozenset({
    READ_INVOICES_FUNCTION_NAME, READ_INVOICES_FUNCTION_ARN, CHARGE_CREDITS_FUNCTION_NAME,
    CHARGE_CREDITS_FUNCTION_ARN, READ_INVOICES_NODE_FUNCTION_NAME, READ_INVOICES_NODE_FUNCTION_ARN,
})
"""Only when the stack deploys the sample functions (``sampleFunctions``, on by default)."""

OPTIONAL_OUTPUTS = SAMPLE_FUNCTION_OUTPUTS | {
    ALARM_TOPIC_ARN, ENDPOINTS_SECURITY_GROUP_ID, DIRECT_SECRET_ARN, DATABASE_OWNER_SECRET_ARN,
}
"""Outputs a stack has only with what they name (the sample functions, an alarm topic, VPC endpoints), and
exactly one of :data:`DIRECT_SECRET_ARN` (the stack made the owner's password) and
:data:`DATABASE_OWNER_SECRET_ARN` (an owner secret read at run time)."""
