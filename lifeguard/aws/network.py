"""The network: private subnets in two or more AZs, their path to AWS APIs, and the security groups.

The security-group graph is the whole access story, so it lives in one place:

    functions --6432--> NLB --6432--> pooler --5432--> database <--5432-- migration job

Nothing else may reach the database. Functions, pooler and migration job also reach AWS APIs
on 443 (Secrets Manager, ECR, CloudWatch Logs): through the VPC endpoints' security group and
the S3 prefix list when the stack creates endpoints, otherwise through the VPC's own route.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from lifeguard.aws.config import INTERFACE_ENDPOINTS, SUBNET_SPLIT_BITS
from lifeguard.aws.types import ApiAccess
from pgbouncer.contract import LISTEN_PORT

POOLER_PORT = LISTEN_PORT
POSTGRES_PORT = 5432
HTTPS_PORT = 443


@dataclass(frozen=True)
class NetworkArgs:
    region: str
    availability_zones: Sequence[str]
    """AZ names for a new VPC's subnets (one private subnet each)."""
    api_access: ApiAccess
    vpc_cidr: str = "10.40.0.0/16"
    nat_gateway_per_az: bool = True
    existing_vpc_id: str | None = None
    existing_private_subnet_ids: Sequence[str] = ()


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    private_subnet_ids: pulumi.Output[list[str]]
    functions_security_group_id: pulumi.Output[str]
    load_balancer_security_group_id: pulumi.Output[str]
    pooler_security_group_id: pulumi.Output[str]
    migration_security_group_id: pulumi.Output[str]
    database_security_group_id: pulumi.Output[str]
    pooler_path: list[pulumi.Resource]
    """What the PgBouncer tasks need before they can start and pass health checks: the routes (and NAT
    gateways) of their subnets, the VPC endpoints they pull images and secrets through, and every
    security-group rule on their way (to the APIs, from the NLB, to the database). The service waits
    for all of it, or its first deployment can fail (and roll back) while the path is still being built."""

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("lifeguard:network:Network", name, None, opts)
        self._name = name
        self.pooler_path = []
        child = pulumi.ResourceOptions(parent=self)

        if args.existing_vpc_id is not None:
            vpc_id: pulumi.Output[str] = pulumi.Output.from_input(args.existing_vpc_id)
            subnet_ids: list[pulumi.Output[str]] = [
                pulumi.Output.from_input(subnet) for subnet in args.existing_private_subnet_ids
            ]
            route_table_ids: list[pulumi.Output[str]] = []
        else:
            vpc = aws.ec2.Vpc(
                f"{name}-vpc",
                cidr_block=args.vpc_cidr,
                # Interface endpoints with private DNS need both.
                enable_dns_support=True,
                enable_dns_hostnames=True,
                tags={"Name": f"{name}-vpc"},
                opts=child,
            )
            # The default security group allows everything within itself: empty it.
            aws.ec2.DefaultSecurityGroup(f"{name}-default-sg", vpc_id=vpc.id, opts=child)
            vpc_id = vpc.id
            subnet_ids, route_table_ids = self._private_subnets(vpc, args)

        self.vpc_id = vpc_id
        self.private_subnet_ids = pulumi.Output.all(*subnet_ids).apply(list)

        def group(role: str, description: str) -> aws.ec2.SecurityGroup:
            return aws.ec2.SecurityGroup(
                f"{name}-{role}-sg",
                vpc_id=vpc_id,
                description=description,
                revoke_rules_on_delete=True,
                tags={"Name": f"{name}-{role}"},
                opts=child,
            )

        functions = group("functions", "Lambda functions: reach the pooler only")
        nlb = group("nlb", "Internal NLB in front of PgBouncer")
        pooler = group("pooler", "PgBouncer tasks: reachable from the NLB, reach the database")
        migration = group("migration", "Migration task: reaches the database directly")
        database = group("database", "RDS Postgres: reachable from the pooler and the migration job only")

        self._allow(functions, nlb, POOLER_PORT, "functions-to-nlb")
        self.pooler_path += self._allow(nlb, pooler, POOLER_PORT, "nlb-to-pooler")
        self.pooler_path += self._allow(pooler, database, POSTGRES_PORT, "pooler-to-database")
        self._allow(migration, database, POSTGRES_PORT, "migration-to-database")

        api_clients = {"functions": functions, "pooler": pooler, "migration": migration}
        if args.api_access == "endpoints":
            endpoints = group("endpoints", "VPC interface endpoints for AWS APIs")
            for client_name, client in api_clients.items():
                rules = self._allow(client, endpoints, HTTPS_PORT, f"{client_name}-to-endpoints")
                if client is pooler:
                    self.pooler_path += rules
            s3 = self._endpoints(args, vpc_id, subnet_ids, route_table_ids, endpoints)
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
                    description="AWS APIs (Secrets Manager, ECR, Logs) over HTTPS through the VPC route",
                    opts=child,
                )
                if client is pooler:
                    self.pooler_path.append(api_rule)

        self.functions_security_group_id = functions.id
        self.load_balancer_security_group_id = nlb.id
        self.pooler_security_group_id = pooler.id
        self.migration_security_group_id = migration.id
        self.database_security_group_id = database.id
        self.register_outputs({
            "vpcId": self.vpc_id,
            "privateSubnetIds": self.private_subnet_ids,
            "databaseSecurityGroupId": self.database_security_group_id,
        })

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
            opts=child,
        )
        return [egress, ingress]

    def _private_subnets(
        self, vpc: aws.ec2.Vpc, args: NetworkArgs
    ) -> tuple[list[pulumi.Output[str]], list[pulumi.Output[str]]]:
        name = self._name
        child = pulumi.ResourceOptions(parent=self)
        network = ipaddress.ip_network(args.vpc_cidr)
        # Sixteen equal blocks: private subnets from the first, public ones (NAT only) from the ninth.
        blocks = list(network.subnets(new_prefix=network.prefixlen + SUBNET_SPLIT_BITS))
        nat_gateways: list[aws.ec2.NatGateway] = []
        if args.api_access == "nat":
            igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, opts=child)
            public_rt = aws.ec2.RouteTable(
                f"{name}-public-rt",
                vpc_id=vpc.id,
                routes=[{"cidr_block": "0.0.0.0/0", "gateway_id": igw.id}],
                opts=child,
            )
            count = len(args.availability_zones) if args.nat_gateway_per_az else 1
            for index, zone in enumerate(args.availability_zones[:count]):
                public = aws.ec2.Subnet(
                    f"{name}-public-{index}",
                    vpc_id=vpc.id,
                    availability_zone=zone,
                    cidr_block=str(blocks[8 + index]),
                    map_public_ip_on_launch=False,
                    tags={"Name": f"{name}-public-{zone}"},
                    opts=child,
                )
                eip = aws.ec2.Eip(f"{name}-nat-ip-{index}", domain="vpc", opts=child)
                public_association = aws.ec2.RouteTableAssociation(
                    f"{name}-public-{index}", subnet_id=public.id, route_table_id=public_rt.id, opts=child
                )
                nat = aws.ec2.NatGateway(
                    f"{name}-nat-{index}",
                    allocation_id=eip.id,
                    subnet_id=public.id,
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[igw]),
                )
                nat_gateways.append(nat)
                self.pooler_path += [public_association, nat]

        subnet_ids: list[pulumi.Output[str]] = []
        route_table_ids: list[pulumi.Output[str]] = []
        for index, zone in enumerate(args.availability_zones):
            subnet = aws.ec2.Subnet(
                f"{name}-private-{index}",
                vpc_id=vpc.id,
                availability_zone=zone,
                cidr_block=str(blocks[index]),
                map_public_ip_on_launch=False,
                tags={"Name": f"{name}-private-{zone}"},
                opts=child,
            )
            routes: list[aws.ec2.RouteTableRouteArgsDict] = []
            if nat_gateways:
                nat = nat_gateways[min(index, len(nat_gateways) - 1)]
                routes.append({"cidr_block": "0.0.0.0/0", "nat_gateway_id": nat.id})
            route_table = aws.ec2.RouteTable(f"{name}-private-rt-{index}", vpc_id=vpc.id, routes=routes, opts=child)
            association = aws.ec2.RouteTableAssociation(
                f"{name}-private-{index}", subnet_id=subnet.id, route_table_id=route_table.id, opts=child
            )
            self.pooler_path += [route_table, association]
            subnet_ids.append(subnet.id)
            route_table_ids.append(route_table.id)
        return subnet_ids, route_table_ids

    def _endpoints(
        self,
        args: NetworkArgs,
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
                service_name=f"com.amazonaws.{args.region}.{service}",
                vpc_endpoint_type="Interface",
                private_dns_enabled=True,
                subnet_ids=subnet_ids,
                security_group_ids=[endpoints_group.id],
                opts=child,
            )
            self.pooler_path.append(interface)
        s3 = aws.ec2.VpcEndpoint(
            f"{self._name}-s3",
            vpc_id=vpc_id,
            service_name=f"com.amazonaws.{args.region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=route_table_ids,
            opts=child,
        )
        self.pooler_path.append(s3)
        return s3
