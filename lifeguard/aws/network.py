"""The network: private subnets in two or more AZs, their path to AWS APIs, and the security groups.

The security-group graph is the whole access story, so it lives in one place:

    clients --6432--> NLB --6432--> pooler --5432--> database <--5432-- migration job

Nothing else may reach the database. The clients' groups are not the network's: each
:class:`lifeguard.aws.PooledClient` brings its own and adds its rules into the NLB's group (and the
endpoints' group) as separate resources. The pooler and the migration job reach AWS APIs on 443
(Secrets Manager, ECR, CloudWatch Logs): through the VPC endpoints' security group and the S3 prefix
list when the network creates endpoints, otherwise through the VPC's own route.
"""

import enum
import ipaddress
from collections.abc import Mapping, Sequence
from typing import Optional, TypedDict

import pulumi
import pulumi_aws as aws

from lifeguard.aws.config import INTERFACE_ENDPOINTS, MAX_VPC_PREFIX, SUBNET_SPLIT_BITS
from lifeguard.aws.type_token import component_type
from pgbouncer.contract import LISTEN_PORT

POOLER_PORT = LISTEN_PORT
POSTGRES_PORT = 5432
HTTPS_PORT = 443
HTTPS_EGRESS_DESCRIPTION = "AWS APIs (Secrets Manager, ECR, Logs) over HTTPS through the VPC route"
"""The description of every 443-anywhere egress rule (deployed stacks hold this text: keep it)."""
DEFAULT_VPC_CIDR = "10.40.0.0/16"
MIN_ZONES = 2


class AwsApiAccess(enum.StrEnum):
    """How the private subnets reach AWS APIs (Secrets Manager, ECR, CloudWatch Logs)."""

    ENDPOINTS = "endpoints"
    """Interface endpoints for those APIs and an S3 gateway endpoint: no route to the internet."""
    NAT = "nat"
    """Public subnets with NAT gateways: a route to the internet."""
    NONE = "none"
    """An existing VPC that already has its own route (the network adds nothing to a VPC it does not own)."""


class NetworkError(ValueError):
    """The network's arguments are invalid; the message names the field to change."""


class NetworkArgs(TypedDict, total=False):
    availability_zones: Sequence[str]
    """A new VPC: the AZ names of its private subnets (one each, at least two). Not with an existing VPC."""
    api_access: AwsApiAccess
    """How the private subnets reach AWS APIs: `endpoints` (default for a new VPC), `nat`, or `none` (the
    only choice, and the default, with an existing VPC)."""
    vpc_cidr: str
    """A new VPC's IPv4 CIDR, /16 to /24 (default 10.40.0.0/16): cut into 16 blocks, private subnets first,
    public ones (NAT) from the ninth."""
    nat_gateway_per_az: bool
    """With `nat`: a NAT gateway in every AZ (default true), else one for all."""
    existing_vpc_id: Optional[str]  # noqa: UP045 (schema analyzer)
    """Use this VPC instead of creating one (with `existing_private_subnet_ids`)."""
    existing_private_subnet_ids: Sequence[str]
    """An existing VPC's private subnets (at least two, in different AZs), where everything runs."""
    region: Optional[str]  # noqa: UP045 (schema analyzer)
    """The region of the endpoints' service names (default: the provider's region)."""
    tags: Mapping[str, pulumi.Input[str]]
    """Tags on every taggable resource the network creates (a `Name` of its own on each that has one)."""
    database_security_group: bool
    """Create a new database's group, with the pooler's and the migration job's rules into it (default true);
    false for an existing database, whose own group gets those rules from `Database`."""


class Network(pulumi.ComponentResource):
    """A VPC (new, or yours by ids) with private subnets in two or more AZs, the security groups of the
    NLB, the PgBouncer tasks, the migration job and the database, and their rules."""

    vpc_id: pulumi.Output[str]
    private_subnet_ids: pulumi.Output[list[str]]
    load_balancer_security_group_id: pulumi.Output[str]
    """The NLB's group: what a :class:`lifeguard.aws.PooledClient` is let into (its ``pooler_security_group_id``)."""
    pooler_security_group_id: pulumi.Output[str]
    migration_security_group_id: pulumi.Output[str]
    database_security_group_id: pulumi.Output[Optional[str]]  # noqa: UP045 (schema analyzer)
    """The new database's group (None with `database_security_group` false)."""
    endpoints_security_group_id: pulumi.Output[Optional[str]]  # noqa: UP045 (schema analyzer)
    """The interface endpoints' group (`endpoints` only, else None): a client in this VPC reaches AWS APIs
    through it (its ``endpoints_security_group_id``)."""

    def __init__(
        self, name: str, args: NetworkArgs, opts: Optional[pulumi.ResourceOptions] = None  # noqa: UP045
    ) -> None:
        existing_vpc_id = args.get("existing_vpc_id")
        api_access = _validated(args)
        super().__init__(component_type(Network, "network"), name, None, opts)
        self._name = name
        self._tags: dict[str, pulumi.Input[str]] = dict(args.get("tags") or {})
        self._api_access = api_access
        self._region = args.get("region") or aws.get_region().region
        self._vpc_cidr = args.get("vpc_cidr") or DEFAULT_VPC_CIDR
        self._zones = tuple(args.get("availability_zones") or ())
        self._nat_gateway_per_az = args.get("nat_gateway_per_az", True)
        # What the PgBouncer tasks need before they can start and pass health checks: the routes (and NAT
        # gateways) of their subnets, the VPC endpoints they pull images and secrets through, and every
        # security-group rule on their way (to the APIs, from the NLB, to the database). The service waits
        # for all of it, or its first deployment can fail (and roll back) while the path is still being
        # built. Not an output (resources, not values): the sample stack hands it to the Pooler.
        self.pooler_path: list[pulumi.Resource] = []
        child = pulumi.ResourceOptions(parent=self)

        if existing_vpc_id is not None:
            vpc_id: pulumi.Output[str] = pulumi.Output.from_input(existing_vpc_id)
            subnet_ids: list[pulumi.Output[str]] = [
                pulumi.Output.from_input(subnet) for subnet in args.get("existing_private_subnet_ids") or ()
            ]
            route_table_ids: list[pulumi.Output[str]] = []
        else:
            vpc = aws.ec2.Vpc(
                f"{name}-vpc",
                cidr_block=self._vpc_cidr,
                # Interface endpoints with private DNS need both.
                enable_dns_support=True,
                enable_dns_hostnames=True,
                tags=self._named(f"{name}-vpc"),
                opts=child,
            )
            # The default security group allows everything within itself: empty it.
            aws.ec2.DefaultSecurityGroup(f"{name}-default-sg", vpc_id=vpc.id, tags=self._extra_tags(), opts=child)
            vpc_id = vpc.id
            subnet_ids, route_table_ids = self._private_subnets(vpc)

        self.vpc_id = vpc_id
        self.private_subnet_ids = pulumi.Output.all(*subnet_ids).apply(list)

        def group(role: str, description: str) -> aws.ec2.SecurityGroup:
            return aws.ec2.SecurityGroup(
                f"{name}-{role}-sg",
                vpc_id=vpc_id,
                description=description,
                revoke_rules_on_delete=True,
                tags=self._named(f"{name}-{role}"),
                opts=child,
            )

        nlb = group("nlb", "Internal NLB in front of PgBouncer")
        pooler = group("pooler", "PgBouncer tasks: reachable from the NLB, reach the database")
        migration = group("migration", "Migration task: reaches the database directly")
        self.pooler_path += self._allow(nlb, pooler, POOLER_PORT, "nlb-to-pooler")
        database_group_id: pulumi.Output[str | None] = pulumi.Output.from_input(None)
        if args.get("database_security_group", True):
            database = group("database", "RDS Postgres: reachable from the pooler and the migration job only")
            database_group_id = database.id.apply(lambda group_id: group_id)
            self.pooler_path += self._allow(pooler, database, POSTGRES_PORT, "pooler-to-database")
            self._allow(migration, database, POSTGRES_PORT, "migration-to-database")

        api_clients = {"pooler": pooler, "migration": migration}
        endpoints_group_id: pulumi.Output[str | None] = pulumi.Output.from_input(None)
        if api_access is AwsApiAccess.ENDPOINTS:
            endpoints = group("endpoints", "VPC interface endpoints for AWS APIs")
            endpoints_group_id = endpoints.id.apply(lambda group_id: group_id)
            for client_name, client in api_clients.items():
                rules = self._allow(client, endpoints, HTTPS_PORT, f"{client_name}-to-endpoints")
                if client is pooler:
                    self.pooler_path += rules
            s3 = self._endpoints(vpc_id, subnet_ids, route_table_ids, endpoints)
            # ECR serves image layers from S3: only the image-pulling tasks need it.
            for client_name in ("pooler", "migration"):
                s3_rule = aws.vpc.SecurityGroupEgressRule(
                    f"{name}-{client_name}-to-s3",
                    security_group_id=api_clients[client_name].id,
                    prefix_list_id=s3.prefix_list_id,
                    ip_protocol="tcp",
                    from_port=HTTPS_PORT,
                    to_port=HTTPS_PORT,
                    description="ECR image layers from S3 (gateway endpoint)",
                    tags=self._extra_tags(),
                    opts=child,
                )
                if client_name == "pooler":
                    self.pooler_path.append(s3_rule)
        else:
            for client_name, client in api_clients.items():
                api_rule = aws.vpc.SecurityGroupEgressRule(
                    f"{name}-{client_name}-to-aws-apis",
                    security_group_id=client.id,
                    cidr_ipv4="0.0.0.0/0",
                    ip_protocol="tcp",
                    from_port=HTTPS_PORT,
                    to_port=HTTPS_PORT,
                    description=HTTPS_EGRESS_DESCRIPTION,
                    tags=self._extra_tags(),
                    opts=child,
                )
                if client is pooler:
                    self.pooler_path.append(api_rule)

        self.load_balancer_security_group_id = nlb.id
        self.pooler_security_group_id = pooler.id
        self.migration_security_group_id = migration.id
        self.database_security_group_id = database_group_id
        self.endpoints_security_group_id = endpoints_group_id
        self.register_outputs({
            "vpcId": self.vpc_id,
            "privateSubnetIds": self.private_subnet_ids,
            "loadBalancerSecurityGroupId": self.load_balancer_security_group_id,
            "databaseSecurityGroupId": self.database_security_group_id,
            "endpointsSecurityGroupId": self.endpoints_security_group_id,
        })

    def _named(self, name: str) -> dict[str, pulumi.Input[str]]:
        """The user's tags and a ``Name`` of the resource's own."""
        return {**self._tags, "Name": name}

    def _extra_tags(self) -> dict[str, pulumi.Input[str]] | None:
        """The user's tags, or None (not an empty map: a deployed stack's resources had no ``tags`` input)."""
        return {key: value for key, value in self._tags.items() if key != "Name"} or None

    def _allow(
        self, source: aws.ec2.SecurityGroup, target: aws.ec2.SecurityGroup, port: int, label: str
    ) -> list[pulumi.Resource]:
        """Let ``source`` open TCP connections to ``target`` on ``port``: an egress and an ingress rule."""
        child = pulumi.ResourceOptions(parent=self)
        egress = aws.vpc.SecurityGroupEgressRule(
            f"{self._name}-{label}-out",
            security_group_id=source.id,
            referenced_security_group_id=target.id,
            ip_protocol="tcp",
            from_port=port,
            to_port=port,
            description=label,
            tags=self._extra_tags(),
            opts=child,
        )
        ingress = aws.vpc.SecurityGroupIngressRule(
            f"{self._name}-{label}-in",
            security_group_id=target.id,
            referenced_security_group_id=source.id,
            ip_protocol="tcp",
            from_port=port,
            to_port=port,
            description=label,
            tags=self._extra_tags(),
            opts=child,
        )
        return [egress, ingress]

    def _private_subnets(self, vpc: aws.ec2.Vpc) -> tuple[list[pulumi.Output[str]], list[pulumi.Output[str]]]:
        name = self._name
        child = pulumi.ResourceOptions(parent=self)
        zones = self._zones
        network = ipaddress.ip_network(self._vpc_cidr)
        # Sixteen equal blocks: private subnets from the first, public ones (NAT only) from the ninth.
        blocks = list(network.subnets(new_prefix=network.prefixlen + SUBNET_SPLIT_BITS))
        nat_gateways: list[aws.ec2.NatGateway] = []
        if self._api_access is AwsApiAccess.NAT:
            igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags=self._extra_tags(), opts=child)
            public_rt = aws.ec2.RouteTable(
                f"{name}-public-rt",
                vpc_id=vpc.id,
                routes=[{"cidr_block": "0.0.0.0/0", "gateway_id": igw.id}],
                tags=self._extra_tags(),
                opts=child,
            )
            count = len(zones) if self._nat_gateway_per_az else 1
            for index, zone in enumerate(zones[:count]):
                public = aws.ec2.Subnet(
                    f"{name}-public-{index}",
                    vpc_id=vpc.id,
                    availability_zone=zone,
                    cidr_block=str(blocks[8 + index]),
                    map_public_ip_on_launch=False,
                    tags=self._named(f"{name}-public-{zone}"),
                    opts=child,
                )
                eip = aws.ec2.Eip(f"{name}-nat-ip-{index}", domain="vpc", tags=self._extra_tags(), opts=child)
                public_association = aws.ec2.RouteTableAssociation(
                    f"{name}-public-{index}", subnet_id=public.id, route_table_id=public_rt.id, opts=child
                )
                nat = aws.ec2.NatGateway(
                    f"{name}-nat-{index}",
                    allocation_id=eip.id,
                    subnet_id=public.id,
                    tags=self._extra_tags(),
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[igw]),
                )
                nat_gateways.append(nat)
                self.pooler_path += [public_association, nat]

        subnet_ids: list[pulumi.Output[str]] = []
        route_table_ids: list[pulumi.Output[str]] = []
        for index, zone in enumerate(zones):
            subnet = aws.ec2.Subnet(
                f"{name}-private-{index}",
                vpc_id=vpc.id,
                availability_zone=zone,
                cidr_block=str(blocks[index]),
                map_public_ip_on_launch=False,
                tags=self._named(f"{name}-private-{zone}"),
                opts=child,
            )
            routes: list[aws.ec2.RouteTableRouteArgsDict] = []
            if nat_gateways:
                nat = nat_gateways[min(index, len(nat_gateways) - 1)]
                routes.append({"cidr_block": "0.0.0.0/0", "nat_gateway_id": nat.id})
            route_table = aws.ec2.RouteTable(f"{name}-private-rt-{index}", vpc_id=vpc.id, routes=routes,
                                             tags=self._extra_tags(), opts=child)
            association = aws.ec2.RouteTableAssociation(
                f"{name}-private-{index}", subnet_id=subnet.id, route_table_id=route_table.id, opts=child
            )
            self.pooler_path += [route_table, association]
            subnet_ids.append(subnet.id)
            route_table_ids.append(route_table.id)
        return subnet_ids, route_table_ids

    def _endpoints(
        self,
        vpc_id: pulumi.Output[str],
        subnet_ids: list[pulumi.Output[str]],
        route_table_ids: list[pulumi.Output[str]],
        endpoints_group: aws.ec2.SecurityGroup,
    ) -> aws.ec2.VpcEndpoint:
        child = pulumi.ResourceOptions(parent=self)
        # Secrets injection and reads, image pulls, logs; config sizes the subnets for their ENIs.
        for service in INTERFACE_ENDPOINTS:
            interface = aws.ec2.VpcEndpoint(
                f"{self._name}-{service.replace('.', '-')}",
                vpc_id=vpc_id,
                service_name=f"com.amazonaws.{self._region}.{service}",
                vpc_endpoint_type="Interface",
                private_dns_enabled=True,
                subnet_ids=subnet_ids,
                security_group_ids=[endpoints_group.id],
                tags=self._extra_tags(),
                opts=child,
            )
            self.pooler_path.append(interface)
        s3 = aws.ec2.VpcEndpoint(
            f"{self._name}-s3",
            vpc_id=vpc_id,
            service_name=f"com.amazonaws.{self._region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=route_table_ids,
            tags=self._extra_tags(),
            opts=child,
        )
        self.pooler_path.append(s3)
        return s3


def _validated(args: NetworkArgs) -> AwsApiAccess:
    """Check the choices before any resource exists; the API access mode, defaulted."""
    existing_vpc_id = args.get("existing_vpc_id")
    subnets = list(args.get("existing_private_subnet_ids") or ())
    zones = list(args.get("availability_zones") or ())
    raw_access = args.get("api_access")
    try:
        api_access = AwsApiAccess(raw_access) if raw_access is not None else (
            AwsApiAccess.NONE if existing_vpc_id is not None else AwsApiAccess.ENDPOINTS)
    except ValueError:
        raise NetworkError(f"NetworkArgs.api_access: must be one of "
                           f"{', '.join(mode.value for mode in AwsApiAccess)}, got {raw_access!r}") from None
    if existing_vpc_id is not None:
        if len(subnets) < MIN_ZONES or len(set(subnets)) != len(subnets):
            raise NetworkError("NetworkArgs.existing_private_subnet_ids: an existing VPC needs at least two "
                               f"distinct private subnets (in different AZs), got {subnets}")
        if zones:
            raise NetworkError("NetworkArgs.availability_zones: only for a new VPC; with existing_vpc_id the "
                               "subnets decide the AZs")
        if api_access is not AwsApiAccess.NONE:
            raise NetworkError("NetworkArgs.api_access: must be `none` with existing_vpc_id: the network adds "
                               "no endpoints or NAT gateways to a VPC it does not own")
        return api_access
    if subnets:
        raise NetworkError("NetworkArgs.existing_private_subnet_ids: only together with existing_vpc_id")
    if len(zones) < MIN_ZONES or len(set(zones)) != len(zones):
        raise NetworkError(f"NetworkArgs.availability_zones: a new VPC needs at least two distinct AZs, got {zones}")
    if api_access is AwsApiAccess.NONE:
        raise NetworkError("NetworkArgs.api_access: `none` is only for an existing VPC; a new VPC needs "
                           "`endpoints` or `nat` to reach Secrets Manager, ECR and Logs")
    cidr = args.get("vpc_cidr") or DEFAULT_VPC_CIDR
    try:
        network = ipaddress.ip_network(cidr)
    except ValueError:
        network = None
    if network is None or network.version != 4 or not 16 <= network.prefixlen <= MAX_VPC_PREFIX:
        raise NetworkError(f"NetworkArgs.vpc_cidr: must be an IPv4 CIDR from /16 to /{MAX_VPC_PREFIX}, got {cidr!r}")
    return api_access
