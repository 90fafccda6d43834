"""The attach unit: what any function (any runtime, a zip or a container image, in this stack or another)
needs to use the pooler, and nothing more.

- a **client security group** in the pooler's VPC, let into the pooler on its port: the egress rule on the
  client group and the ingress rule on the group in front of the pooler (the NLB's) are separate rule
  resources, never inline, so a client in another stack adds its own pair without touching the pooler's
  stack; the function's other egress is the user's choice (:attr:`PooledClientArgs.allow_https_egress`,
  their own :attr:`PooledClientArgs.security_group_ids`, the VPC's interface endpoints), never silently none;
- a **managed IAM policy** that reads exactly the pooled secret (and decrypts it with a customer managed
  key when one is given), attachable to any role; :meth:`PooledClient.grant` attaches it, as CDK's
  ``grantConnect`` does;
- the **environment** the clients read (``lambdas/db.py``, ``lambdas-node/db.mjs``): the pooled secret's
  ARN, never its value, the prepared-statements flag, ``NODE_EXTRA_CA_CERTS``;
- the pooler's **CA**: the layer for zip functions, the PEM for images. ``DATABASE_URL`` names the CA at
  :data:`CA_PATH` (``/opt/lifeguard/pooler-ca.pem``), where the layer unpacks it; an image function puts
  the PEM there itself (Lambda images take no layers)::

      # pulumi stack output poolerCaCertificate > pooler-ca.pem   (or write the client's ca_pem)
      COPY pooler-ca.pem /opt/lifeguard/pooler-ca.pem

Every input is a plain value or an ``Output`` of one, so the arguments come as well from the components
(:class:`lifeguard.aws.Network`, :class:`lifeguard.aws.Pooler`, ...) as from another stack's outputs
(:func:`pooled_client_args_from_stack`).
"""

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn, Optional, Required, TypedDict, TypeGuard

import pulumi
import pulumi_aws as aws

from database_urls import POOLED_URL_SECRET_ARN_ENV
from lambdas.contract import NODE_CA_ENV, PREPARED_ENV
from lifeguard.aws import outputs as output_names
from lifeguard.aws.network import HTTPS_EGRESS_DESCRIPTION, HTTPS_PORT, POOLER_PORT
from lifeguard.aws.policies import read_pooled_secret
from lifeguard.aws.pooler_tls import CA_PATH
from lifeguard.aws.type_token import component_type

DEFAULT_DESCRIPTION = "Clients of the lifeguard pooler: reach it on its port"
_SECRET_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+$")
_KMS_KEY_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]+$")
_SECURITY_GROUP_ID = re.compile(r"^sg-[0-9a-f]{8,17}$")


class PooledClientError(ValueError):
    """The client's arguments are invalid; the message names the field to change."""


class PooledClientArgs(TypedDict, total=False):
    vpc_id: Required[pulumi.Input[str]]
    """The pooler's VPC (``Network.vpc_id``; stack output ``vpcId``)."""
    pooler_security_group_id: Required[pulumi.Input[str]]
    """The group in front of the pooler, which the client is let into
    (``Network.load_balancer_security_group_id``; stack output ``poolerSecurityGroupId``)."""
    pooler_port: pulumi.Input[int]
    """The pooler's port (default 6432; ``Pooler.port``; stack output ``poolerPort``)."""
    pooled_secret_arn: Required[pulumi.Input[str]]
    """The secret holding ``DATABASE_URL`` (stack output ``pooledSecretArn``): the one secret the
    policy reads."""
    kms_key_arn: Optional[pulumi.Input[str]]  # noqa: UP045 (schema analyzer)
    """The customer managed KMS key the pooled secret is encrypted with, if any (the policy then decrypts
    with it through Secrets Manager only). Not needed for Secrets Manager's own key (the default)."""
    ca_layer_arn: Required[pulumi.Input[str]]
    """The Lambda layer with the pooler's CA (``PoolerCertificateAuthority.layer_arn``; stack
    output ``poolerCaLayerArn``), for zip functions."""
    ca_pem: Required[pulumi.Input[str]]
    """The pooler's CA certificate, PEM (``PoolerCertificateAuthority.cert_pem``; stack output
    ``poolerCaCertificate``), for image functions: copy it to ``ca_path`` in the image."""
    prepared_statements: pulumi.Input[bool]
    """The pooler tracks prepared statements (stack output ``poolerPreparedStatements``): the clients may then
    prepare. Default false, which is safe with any pooler."""
    query_wait_timeout_seconds: Required[pulumi.Input[int]]
    """The pooler's ``query_wait_timeout`` (stack output ``poolerQueryWaitTimeoutSeconds``)."""
    function_timeout_seconds: pulumi.Input[int]
    """The shortest timeout of the functions this client attaches: it must be longer than
    ``query_wait_timeout_seconds``, so a function queued for a server connection gets the pooler's error,
    not a platform timeout. Leave it out only for a client no function of this program attaches (a group and
    policy shared through stack outputs): whoever attaches one checks its timeout then."""
    allow_https_egress: bool
    """Let the client group open HTTPS (443) to anywhere: AWS APIs (Secrets Manager, for the URL) and the
    function's own services, through the VPC's route. Default: true unless ``security_group_ids`` or
    ``endpoints_security_group_id`` is given."""
    security_group_ids: Sequence[pulumi.Input[str]]
    """Your own groups for the functions, with the egress you chose; the client group only adds the pooler.
    ``PooledClient.security_group_ids`` lists them after the client group: a function's whole list."""
    endpoints_security_group_id: Optional[pulumi.Input[str]]  # noqa: UP045 (schema analyzer)
    """The VPC's interface endpoints' group (``Network.endpoints_security_group_id``; stack output
    ``endpointsSecurityGroupId``): the client reaches AWS APIs through it (egress, and ingress on it)."""
    description: str
    """The client group's description (EC2 replaces a group whose description changes)."""
    tags: Mapping[str, pulumi.Input[str]]
    """Tags on every taggable resource; a ``Name`` names the client group only (default: the client's name)."""


class PooledClient(pulumi.ComponentResource):
    """The attach unit for any function: a client security group let into the pooler, a managed policy that
    reads exactly the pooled secret, the environment the client reads, and the pooler's CA."""

    security_group_id: pulumi.Output[str]
    """The client group: attach it to the function (``vpc_config.security_group_ids``)."""
    security_group_ids: pulumi.Output[list[str]]
    """The client group, then ``security_group_ids``: the function's whole list."""
    policy_arn: pulumi.Output[str]
    """A managed policy that reads the pooled secret and nothing else: attach it to the function's role
    (``grant``)."""
    environment: pulumi.Output[dict[str, str]]
    """The function's environment: the pooled secret's ARN (``DATABASE_URL_SECRET_ARN``), the
    prepared-statements flag, ``NODE_EXTRA_CA_CERTS``."""
    ca_layer_arn: pulumi.Output[str]
    """Zip functions: the layer that puts the CA at ``ca_path``."""
    ca_pem: pulumi.Output[str]
    """Image functions: the CA certificate to copy to ``ca_path`` in the image."""
    ca_path: pulumi.Output[str]
    """Where ``DATABASE_URL``'s ``sslrootcert`` (and ``NODE_EXTRA_CA_CERTS``) expects the CA."""

    def __init__(
        self, name: str, args: PooledClientArgs, opts: Optional[pulumi.ResourceOptions] = None  # noqa: UP045
    ) -> None:
        https_egress = _validated(args)
        super().__init__(component_type(PooledClient, "client"), name, None, opts)
        self._name = name
        tags = dict(args.get("tags") or {})
        # Each child names itself; the user's Name is the group's (the EC2 console's Name column).
        child_tags = {key: value for key, value in tags.items() if key != "Name"} or None
        child = pulumi.ResourceOptions(parent=self)
        port = args.get("pooler_port", POOLER_PORT)
        pooler_group = args["pooler_security_group_id"]

        group = aws.ec2.SecurityGroup(
            f"{name}-sg",
            vpc_id=args["vpc_id"],
            description=args.get("description", DEFAULT_DESCRIPTION),
            revoke_rules_on_delete=True,
            tags={"Name": name, **tags},
            opts=child,
        )
        self._pair(group.id, pooler_group, port, f"{name}-to-nlb", child_tags)
        endpoints = args.get("endpoints_security_group_id")
        if endpoints is not None:
            self._pair(group.id, endpoints, HTTPS_PORT, f"{name}-to-endpoints", child_tags)
        if https_egress:
            aws.vpc.SecurityGroupEgressRule(
                f"{name}-to-https",
                security_group_id=group.id,
                cidr_ipv4="0.0.0.0/0",
                ip_protocol="tcp",
                from_port=HTTPS_PORT,
                to_port=HTTPS_PORT,
                description=HTTPS_EGRESS_DESCRIPTION,
                tags=child_tags,
                opts=child,
            )

        secret_arn = pulumi.Output.from_input(args["pooled_secret_arn"])
        kms_key = args.get("kms_key_arn")
        policy = aws.iam.Policy(
            f"{name}-read-pooled-secret",
            description="Read the pooled DATABASE_URL secret (lifeguard) and nothing else",
            policy=pulumi.Output.all(secret_arn, kms_key).apply(
                lambda values: json.dumps(read_pooled_secret(values[0], values[1]))
            ),
            tags=child_tags,
            opts=child,
        )

        # Checked when known (another stack's output, a component's): a bad pair fails the run there.
        checked = pulumi.Output.all(args["query_wait_timeout_seconds"], args.get("function_timeout_seconds")).apply(
            lambda values: values[1] is None or _check_timeouts(values[0], values[1])
        )
        prepared = pulumi.Output.from_input(args.get("prepared_statements", False))
        self.environment = pulumi.Output.all(secret_arn, prepared, checked).apply(
            lambda values: {
                POOLED_URL_SECRET_ARN_ENV: values[0],
                PREPARED_ENV: "1" if values[1] else "0",
                # Node.js adds it to its trusted CAs at start: clients that read no sslrootcert
                # (postgres.js) verify the pooler too. Python ignores it.
                NODE_CA_ENV: CA_PATH,
            }
        )
        self.security_group_id = group.id
        self.security_group_ids = pulumi.Output.all(group.id, *(args.get("security_group_ids") or ())).apply(list)
        self.policy_arn = policy.arn
        self.ca_layer_arn = pulumi.Output.from_input(args["ca_layer_arn"])
        self.ca_pem = pulumi.Output.from_input(args["ca_pem"])
        self.ca_path = pulumi.Output.from_input(CA_PATH)
        # The environment carries the timeout check: a bad pair fails the preview here, where it is known.
        self.register_outputs({
            "securityGroupId": self.security_group_id,
            "securityGroupIds": self.security_group_ids,
            "policyArn": self.policy_arn,
            "environment": self.environment,
            "caLayerArn": self.ca_layer_arn,
            "caPem": self.ca_pem,
            "caPath": self.ca_path,
        })

    def grant(self, role: aws.iam.Role | str, name: str | None = None) -> aws.iam.RolePolicyAttachment:
        """Attach the read-the-pooled-secret policy to ``role`` (a Role of this program, or an existing
        role's name), as a ``RolePolicyAttachment`` parented to this client. ``name`` tells two grants apart
        in the resource names (default: the role's resource name or the role name)."""
        if isinstance(role, aws.iam.Role):
            label = name or role.pulumi_resource_name
            role_name: pulumi.Input[str] = role.name
        elif isinstance(role, str) and role:
            label = name or role
            role_name = role
        else:
            raise PooledClientError(f"PooledClient.grant: give an aws.iam.Role or a role's name, got {role!r}")
        return aws.iam.RolePolicyAttachment(
            f"{self._name}-{label}",
            role=role_name,
            policy_arn=self.policy_arn,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _pair(
        self, client: pulumi.Input[str], target: pulumi.Input[str], port: pulumi.Input[int], label: str,
        tags: dict[str, pulumi.Input[str]] | None,
    ) -> None:
        """Let the client group open TCP to ``target`` on ``port``: an egress rule on the client group and an
        ingress rule on ``target``, each its own resource."""
        child = pulumi.ResourceOptions(parent=self)
        aws.vpc.SecurityGroupEgressRule(
            f"{label}-out", security_group_id=client, referenced_security_group_id=target, ip_protocol="tcp",
            from_port=port, to_port=port, description=label, tags=tags, opts=child,
        )
        aws.vpc.SecurityGroupIngressRule(
            f"{label}-in", security_group_id=target, referenced_security_group_id=client, ip_protocol="tcp",
            from_port=port, to_port=port, description=label, tags=tags, opts=child,
        )


def pooled_client_args_from_stack(
    stack: pulumi.StackReference,
    *,
    function_timeout_seconds: pulumi.Input[int],
    through_endpoints: bool,
    allow_https_egress: bool | None = None,
    security_group_ids: Sequence[pulumi.Input[str]] = (),
    tags: Mapping[str, pulumi.Input[str]] | None = None,
) -> PooledClientArgs:
    """The arguments of a :class:`PooledClient` in another stack, from the outputs of a stack of lifeguard's
    sample program (``pulumi.StackReference("<org>/lifeguard/<stack>")``).

    ``through_endpoints``: that stack runs with ``awsApiAccess: endpoints`` (the default for a new VPC): its
    VPC has no route out, so the client reaches AWS APIs through its interface endpoints
    (``endpointsSecurityGroupId``). Otherwise the client gets ``allow_https_egress`` (default true)."""
    args: PooledClientArgs = {
        "vpc_id": stack.require_output(output_names.VPC_ID),
        "pooler_security_group_id": stack.require_output(output_names.POOLER_SECURITY_GROUP_ID),
        "pooler_port": stack.require_output(output_names.POOLER_PORT),
        "pooled_secret_arn": stack.require_output(output_names.POOLED_SECRET_ARN),
        "ca_layer_arn": stack.require_output(output_names.POOLER_CA_LAYER_ARN),
        "ca_pem": stack.require_output(output_names.POOLER_CA_CERTIFICATE),
        "prepared_statements": stack.require_output(output_names.POOLER_PREPARED_STATEMENTS),
        "query_wait_timeout_seconds": stack.require_output(output_names.POOLER_QUERY_WAIT_TIMEOUT_SECONDS),
        "function_timeout_seconds": function_timeout_seconds,
        "security_group_ids": list(security_group_ids),
        "tags": dict(tags or {}),
    }
    if through_endpoints:
        args["endpoints_security_group_id"] = stack.require_output(output_names.ENDPOINTS_SECURITY_GROUP_ID)
    if allow_https_egress is not None:
        args["allow_https_egress"] = allow_https_egress
    return args


def _fail(field: str, message: str) -> NoReturn:
    raise PooledClientError(f"PooledClientArgs.{field}: {message}")


def _plain(value: Any) -> bool:
    """A value known now (not an ``Output`` or an awaitable): checked at construction."""
    return not isinstance(value, pulumi.Output) and not hasattr(value, "__await__")


def _validated(args: PooledClientArgs) -> bool:
    """Check the arguments before any resource exists; whether the client group gets HTTPS anywhere."""
    for field in ("vpc_id", "pooler_security_group_id", "pooled_secret_arn", "ca_layer_arn", "ca_pem",
                  "query_wait_timeout_seconds"):
        value = args.get(field)
        if value is None or (isinstance(value, str) and not value.strip()):
            _fail(field, "is required")
    secret = args["pooled_secret_arn"]
    if _plain(secret) and not _SECRET_ARN.match(str(secret)):
        _fail("pooled_secret_arn", f"must be a Secrets Manager secret's full ARN "
                                   f"(arn:aws:secretsmanager:<region>:<account>:secret:<name>-AbCdEf), got {secret!r}")
    kms_key = args.get("kms_key_arn")
    if kms_key is not None and _plain(kms_key) and not _KMS_KEY_ARN.match(str(kms_key)):
        _fail("kms_key_arn", f"must be a KMS key's ARN (arn:aws:kms:<region>:<account>:key/<key id>; not an "
                             f"alias, which IAM does not match against the key), got {kms_key!r}")
    port = args.get("pooler_port", POOLER_PORT)
    if _plain(port) and not (_whole(port) and 1 <= port <= 65535):
        _fail("pooler_port", f"must be a TCP port (1 to 65535), got {port!r}")
    for field in ("query_wait_timeout_seconds", "function_timeout_seconds"):
        value = args.get(field, 1)
        if _plain(value) and not (_whole(value) and value >= 1):
            _fail(field, f"must be a whole number of seconds, at least 1, got {value!r}")
    query_wait, timeout = args["query_wait_timeout_seconds"], args.get("function_timeout_seconds")
    if timeout is not None and _plain(query_wait) and _plain(timeout):
        _check_timeouts(query_wait, timeout)  # type: ignore[arg-type]
    own_groups = list(args.get("security_group_ids") or ())
    for group in own_groups:
        if _plain(group) and not _SECURITY_GROUP_ID.match(str(group)):
            _fail("security_group_ids", f"{group!r} is not a security group ID (sg-...)")
    endpoints = args.get("endpoints_security_group_id")
    https = args.get("allow_https_egress")
    if https is not None and not isinstance(https, bool):
        _fail("allow_https_egress", f"must be true or false (known when the program runs), got {https!r}")
    if https is None:
        https = not own_groups and endpoints is None
    if not https and not own_groups and endpoints is None:
        _fail("allow_https_egress", "is false, and neither security_group_ids nor endpoints_security_group_id "
                                    "is given: the function could not reach Secrets Manager to read its URL. "
                                    "Allow HTTPS egress, give your own groups, or the VPC's endpoints' group")
    return https


def _whole(value: Any) -> TypeGuard[float]:
    """A whole number: an int, or a float without a fraction (Pulumi's wire numbers, e.g. stack outputs, are floats)."""
    return not isinstance(value, bool) and (isinstance(value, int) or (isinstance(value, float) and value.is_integer()))


def _check_timeouts(query_wait: float, function_timeout: float) -> bool:
    if query_wait >= function_timeout:
        _fail("function_timeout_seconds", f"the functions' timeout ({function_timeout:g} s) must be longer than the "
                                          f"pooler's query_wait_timeout ({query_wait:g} s): a function queued for a "
                                          "server connection must get the pooler's error before its platform "
                                          "kills it. Raise the functions' timeout or lower the pooler's "
                                          "query_wait_timeout (queryWaitTimeoutSeconds)")
    return True
