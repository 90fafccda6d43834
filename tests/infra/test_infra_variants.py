"""The program under other configurations: production defaults, NAT, an existing VPC, arm64 images,
alarms that notify a topic the stack creates or one that exists already."""

from __future__ import annotations

from pathlib import Path

from lifeguard.aws.outputs import STACK_OUTPUTS
from tests.infra.infra_harness import ProgramRun, run_program
from tests.infra.test_infra_stack import INTERNET_GRAPH, assert_ec2_descriptions, sg_roles, sg_rules
from tests.infra.variants import ALARM_EMAIL, EXISTING_SUBNETS, EXISTING_TOPIC, EXISTING_VPC, REGION


def test_production_protects_data(production_run: ProgramRun) -> None:
    db = production_run.one("aws:rds/instance:Instance")
    assert db.input("multiAz") is True
    assert db.input("deletionProtection") is True
    assert db.input("skipFinalSnapshot") is False
    assert db.input("finalSnapshotIdentifier") == "database-final-a1b2c3d4"
    assert production_run.one("aws:lb/loadBalancer:LoadBalancer").input("enableDeletionProtection") is True
    secrets = production_run.of_type("aws:secretsmanager/secret:Secret")
    assert {s.input("recoveryWindowInDays") for s in secrets} == {30}
    assert {s.input("namePrefix").split("/")[0] for s in secrets} == {"lifeguard-prod-82078622"}
    assert {r.input("forceDelete") for r in production_run.of_type("aws:ecr/repository:Repository")} == {False}


def test_production_defaults_reserve_no_concurrency_and_use_x86(production_run: ProgramRun) -> None:
    for function in production_run.of_type("aws:lambda/function:Function"):
        # Lambda keeps 10 unreserved: in a new account (limit 10) any reservation fails (#12.14).
        assert "reservedConcurrentExecutions" not in function.inputs
        assert function.input("architectures") == ["x86_64"]
        # The Node.js function's zip is plain JavaScript, the same for either architecture.
        zips = {"nodejs24.x": "lambdas-node.zip", "python3.13": "lambdas-x86_64.zip"}
        assert Path(function.inputs["code"].path).name == zips[function.input("runtime")]
    assert production_run.outputs["poolSize"] == 11
    assert set(production_run.outputs) >= STACK_OUTPUTS
    assert not production_run.secret_outputs


def test_nat_gives_every_az_a_route_to_aws_apis(nat_run: ProgramRun) -> None:
    assert not nat_run.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")
    assert len(nat_run.of_type("aws:ec2/internetGateway:InternetGateway")) == 1
    nats = nat_run.of_type("aws:ec2/natGateway:NatGateway")
    assert len(nats) == 3  # production: one per AZ
    subnets = {s.id: s for s in nat_run.of_type("aws:ec2/subnet:Subnet")}
    private = {i for i, s in subnets.items() if "private" in s.name}
    assert len(private) == 3 and len({subnets[i].input("availabilityZone") for i in private}) == 3
    assert all(s.input("mapPublicIpOnLaunch") is False for s in subnets.values())
    # Every private route table sends 0.0.0.0/0 to a NAT gateway, in the private subnet's own AZ.
    tables = {t.id: t for t in nat_run.of_type("aws:ec2/routeTable:RouteTable")}
    for association in nat_run.of_type("aws:ec2/routeTableAssociation:RouteTableAssociation"):
        if association.input("subnetId") not in private:
            continue
        [route] = tables[association.input("routeTableId")].input("routes")
        nat = nat_run.by_id(route["natGatewayId"])
        nat_subnet = subnets[nat.input("subnetId")]
        assert "public" in nat_subnet.name
        assert nat_subnet.input("availabilityZone") == subnets[association.input("subnetId")].input("availabilityZone")


def test_nat_security_groups_open_only_https_to_the_internet(nat_run: ProgramRun) -> None:
    rules = sg_rules(nat_run)
    internet = {(group, port) for d, group, peer, port in rules if peer == "0.0.0.0/0"}
    assert internet == {("functions", 443), ("pooler", 443), ("migration", 443)}
    assert all(d == "out" for d, _, peer, _ in rules if peer == "0.0.0.0/0")
    assert {peer for d, group, peer, _ in rules if d == "in" and group == "database"} == {"pooler", "migration"}
    assert "endpoints" not in sg_roles(nat_run).values()
    assert_ec2_descriptions(nat_run)


def test_a_non_production_nat_stack_shares_one_gateway(build_dir: Path) -> None:
    run = run_program({**REGION, "awsApiAccess": "nat", "production": "false"}, build_dir)
    assert len(run.of_type("aws:ec2/natGateway:NatGateway")) == 1
    assert len(run.of_type("aws:ec2/eip:Eip")) == 1


def test_existing_vpc_is_used_not_created(existing_vpc_run: ProgramRun) -> None:
    assert not existing_vpc_run.of_type("aws:ec2/vpc:Vpc")
    assert not existing_vpc_run.of_type("aws:ec2/subnet:Subnet")
    assert not existing_vpc_run.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")
    assert {g.input("vpcId") for g in existing_vpc_run.of_type("aws:ec2/securityGroup:SecurityGroup")} == {
        EXISTING_VPC}
    subnet_calls = [args["id"] for token, args in existing_vpc_run.calls if token == "aws:ec2/getSubnet:getSubnet"]
    assert sorted(subnet_calls) == sorted(EXISTING_SUBNETS)
    service = existing_vpc_run.one("aws:ecs/service:Service")
    assert service.input("networkConfiguration")["subnets"] == sorted(EXISTING_SUBNETS)
    assert existing_vpc_run.outputs["vpcId"] == EXISTING_VPC
    assert existing_vpc_run.outputs["migrationSubnetIds"] == sorted(EXISTING_SUBNETS)
    assert existing_vpc_run.one("aws:lb/targetGroup:TargetGroup").input("vpcId") == EXISTING_VPC
    assert sg_rules(existing_vpc_run) == INTERNET_GRAPH


def test_arm64_containers_build_and_run_on_arm64(existing_vpc_run: ProgramRun) -> None:
    for image in existing_vpc_run.of_type("docker:index/image:Image"):
        assert image.input("build")["platform"] == "linux/arm64"
        assert image.input("imageName").rsplit(":", 1)[1].startswith("arm64-")
    for task in existing_vpc_run.of_type("aws:ecs/taskDefinition:TaskDefinition"):
        assert task.input("runtimePlatform")["cpuArchitecture"] == "ARM64"


# -- alarm notifications --------------------------------------------------------------------------


def alarm_actions(run: ProgramRun) -> list[tuple[list[str], list[str]]]:
    registered = run.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    return [(a.input("alarmActions"), a.input("okActions")) for a in registered]


def test_alarm_email_gets_a_topic_of_the_stacks_own(nat_run: ProgramRun) -> None:
    topic = nat_run.one("aws:sns/topic:Topic")
    [subscription] = nat_run.of_type("aws:sns/topicSubscription:TopicSubscription")
    assert (subscription.input("protocol"), subscription.input("endpoint")) == ("email", ALARM_EMAIL)
    assert subscription.input("topic") == topic.state["arn"]
    actions = alarm_actions(nat_run)
    assert len(actions) == 6  # with the certificate-expiry alarm (#27.9)
    assert all(on_alarm == on_ok == [topic.state["arn"]] for on_alarm, on_ok in actions)
    assert nat_run.outputs["alarmTopicArn"] == topic.state["arn"]
    assert not nat_run.secret_outputs


def test_alarm_thresholds_come_from_config(nat_run: ProgramRun) -> None:
    registered = nat_run.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    alarms = {a.name.removeprefix("observability-"): a for a in registered}
    assert alarms["clients-waiting"].input("evaluationPeriods") == 5
    assert alarms["max-wait"].input("threshold") == 2.5
    assert alarms["pooler-cpu"].input("threshold") == 90
    assert alarms["db-connections"].input("threshold") == 373  # floor(415 x 90 %)
    assert nat_run.one("aws:rds/parameterGroup:ParameterGroup").input("parameters")[0]["value"] == "415"
    # The sidecar and the alarms use one Service name per stack.
    assert nat_run.outputs["poolerMetricsService"] == "lifeguard-prod-pgbouncer-82078622"
    assert alarms["clients-waiting"].input("dimensions") == {"Service": "lifeguard-prod-pgbouncer-82078622"}


def test_existing_alarm_topic_is_notified_not_created(existing_vpc_run: ProgramRun) -> None:
    assert not existing_vpc_run.of_type("aws:sns/topic:Topic")
    assert not existing_vpc_run.of_type("aws:sns/topicSubscription:TopicSubscription")
    assert all(on_alarm == on_ok == [EXISTING_TOPIC] for on_alarm, on_ok in alarm_actions(existing_vpc_run))
    assert existing_vpc_run.outputs["alarmTopicArn"] == EXISTING_TOPIC


def test_production_defaults_notify_nobody(production_run: ProgramRun) -> None:
    assert not production_run.of_type("aws:sns/topic:Topic")
    assert all(not on_alarm and not on_ok for on_alarm, on_ok in alarm_actions(production_run))
    assert "alarmTopicArn" not in production_run.outputs
    assert len(production_run.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")) == 6
