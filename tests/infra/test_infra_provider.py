"""The component provider (#26.4): the committed schema is the public API, the provider process serves
exactly it, and a Construct through the provider builds the components from a dict of wire inputs.

No Pulumi CLI runs here. What stands in for it: the provider process is started as the Python language
host starts a plugin folder (``python <folder> <engine address>``) and asked over gRPC, as the engine
asks; Constructs run through the SDK's own ``ComponentProvider`` and the servicer's own input decoding
and response encoding, under the strict mocks of the sample stack's tests (the engine's monitor is the
mock one). What only ``pulumi package add`` on a machine with the CLI shows is in docs/provider.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped]
import pulumi
import pytest
import yaml
from google.protobuf import empty_pb2, struct_pb2  # type: ignore[import-untyped]
from pulumi.errors import InputPropertyError
from pulumi.provider.experimental.analyzer import Analyzer
from pulumi.provider.server import ComponentInitError, ProviderServicer
from pulumi.runtime import proto, rpc
from pulumi.runtime.proto import provider_pb2_grpc
from pulumi.runtime.sync_await import _sync_await

import lifeguard.aws
from lifeguard.aws import provider as lifeguard_provider
from lifeguard.aws.type_token import host_components, stop_hosting
from tests.infra.infra_harness import (
    ACCOUNT,
    PROJECT,
    REGION,
    REPO_ROOT,
    RecordingMonitor,
    StrictMocks,
    is_secret,
    walk_plain_strings,
)

SCHEMA_PATH = lifeguard_provider.SCHEMA_PATH


# -- the schema --------------------------------------------------------------------------------------


def test_every_public_component_passes_the_analyzer_on_its_own() -> None:
    """Each component alone, so a failure names the one to fix (the README's rules for public components)."""
    for component in lifeguard_provider.components():
        try:
            Analyzer(PROJECT).analyze([component])
        except Exception as exc:  # the analyzer raises plain Exceptions: name the component
            pytest.fail(f"{component.__module__}.{component.__name__}: the SDK's analyzer refuses it: {exc!r}")


def test_the_provider_hosts_every_public_component() -> None:
    exported = {getattr(lifeguard.aws, name) for name in lifeguard.aws.__all__}
    components = {item for item in exported if isinstance(item, type) and issubclass(item, pulumi.ComponentResource)}
    assert set(lifeguard_provider.components()) == components
    # Every component's Args is public too (a consumer in Python names them).
    assert {f"{c.__name__}Args" for c in components} <= set(lifeguard.aws.__all__)
    schema = json.loads(SCHEMA_PATH.read_text())
    assert set(schema["resources"]) == {f"lifeguard:index:{c.__name__}" for c in components}
    assert all(resource["isComponent"] for resource in schema["resources"].values())


def test_the_committed_schema_is_the_public_api() -> None:
    committed = SCHEMA_PATH.read_text()
    generated = lifeguard_provider.schema_text()
    if generated != committed:
        old, new = json.loads(committed), json.loads(generated)
        changed = sorted(
            token
            for section in ("resources", "types")
            for token in set(old.get(section, {})) | set(new.get(section, {}))
            if old.get(section, {}).get(token) != new.get(section, {}).get(token)
        )
        pytest.fail(
            f"the public components' API and {SCHEMA_PATH.relative_to(REPO_ROOT)} differ "
            f"(changed: {', '.join(changed) or 'package metadata'}); if the change is meant, regenerate it:\n"
            f"    {lifeguard_provider.REGENERATE}\nand review the diff: it is the SDKs' API change."
        )


def test_the_schema_names_the_distribution_and_its_version() -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    assert (schema["name"], schema["version"]) == ("lifeguard", lifeguard_provider.version())


def test_secrets_and_required_inputs_in_the_schema() -> None:
    pooler = json.loads(SCHEMA_PATH.read_text())["resources"]["lifeguard:index:Pooler"]
    # What the pooler cannot work without is required in every generated SDK; the rest has defaults.
    assert {"vpcId", "subnetIds", "databaseAddress", "dbName", "maxConnections", "username", "verifier",
            "caCertPem", "caPrivateKeyPem"} <= set(pooler["requiredInputs"])
    assert "minTasks" in pooler["inputProperties"] and "minTasks" not in pooler["requiredInputs"]
    assert all(prop.get("description") for prop in pooler["inputProperties"].values())


# -- the plugin as the CLI runs it ------------------------------------------------------------------


def test_the_plugin_manifest_runs_the_provider_with_the_repository_virtualenv() -> None:
    manifest = yaml.safe_load((REPO_ROOT / "PulumiPlugin.yaml").read_text())
    assert manifest["runtime"]["name"] == "python"
    assert manifest["runtime"]["options"] == {"toolchain": "pip", "virtualenv": ".venv"}
    # The Python language host runs a plugin folder with a __main__.py as `python <folder> <args>`.
    assert (REPO_ROOT / "__main__.py").is_file()


@pytest.fixture(scope="module")
def plugin() -> Iterator[provider_pb2_grpc.ResourceProviderStub]:
    """The plugin started as the language host starts it: ``python <repository> <engine address>``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
    # An engine address nothing listens on: GetSchema and GetPluginInfo never call the engine.
    process = subprocess.Popen(
        [sys.executable, str(REPO_ROOT), "127.0.0.1:9"], cwd=REPO_ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        port = process.stdout.readline().strip()
        if not port.isdigit():
            process.kill()
            _, stderr = process.communicate(timeout=30)
            pytest.fail(f"the provider did not print its port (got {port!r}): {stderr[-2000:]}")
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield provider_pb2_grpc.ResourceProviderStub(channel)
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_provider_process_serves_the_committed_schema(plugin: provider_pb2_grpc.ResourceProviderStub) -> None:
    response = plugin.GetSchema(proto.GetSchemaRequest(version=0), timeout=60)
    assert json.loads(response.schema) == json.loads(SCHEMA_PATH.read_text())
    info = plugin.GetPluginInfo(empty_pb2.Empty(), timeout=60)
    assert info.version == lifeguard_provider.version()


# -- Construct through the provider ------------------------------------------------------------------


def type_and_name(urn: str) -> tuple[str, str]:
    """A URN's own type (not its parents') and name."""
    _, _, types, name = urn.split("::")
    return types.split("$")[-1], name


class Construct:
    """One Construct as the servicer does it: wire inputs decoded by its own code, the component built by
    the SDK's ComponentProvider (hosting: lifeguard:index tokens), the response encoded by its own code."""

    def __init__(self, build_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("LIFEGUARD_BUILD_DIR", str(build_dir))
        self.mocks = StrictMocks()
        self.monitor = RecordingMonitor(self.mocks)
        pulumi.runtime.set_mocks(self.mocks, project=PROJECT, stack="dev", preview=False, monitor=self.monitor)
        self.response: proto.ConstructResponse | None = None

    def __call__(self, component: str, name: str, wire_inputs: Mapping[str, Any],
                 secrets: frozenset[str] = frozenset()) -> proto.ConstructResponse:
        struct = struct_pb2.Struct()
        # As the engine sends them: numbers are doubles; secret values wrapped in the secret signature.
        struct.update({key: ({rpc._special_sig_key: rpc._special_secret_sig, "value": value}
                             if key in secrets else value) for key, value in wire_inputs.items()})
        servicer = ProviderServicer(lifeguard_provider.provider(), [], engine_address="")

        @pulumi.runtime.test  # type: ignore[untyped-decorator]
        def run() -> None:
            inputs = _sync_await(ProviderServicer._construct_inputs(struct, {}))
            result = servicer.provider.construct(name, f"lifeguard:index:{component}", inputs,
                                                 pulumi.ResourceOptions())
            self.response = _sync_await(servicer._construct_response(result))

        host_components()
        try:
            run()
        finally:
            stop_hosting()
        assert self.response is not None
        return self.response

    def registered(self) -> dict[str, str]:
        """URN -> type of every registration."""
        return {urn: type_and_name(urn)[0] for urn in self.monitor.get_registered_resources()}


@pytest.fixture
def construct(build_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Construct:
    return Construct(build_dir, monkeypatch)


OBSERVABILITY_INPUTS = {
    "clusterName": "lifeguard-cluster", "serviceName": "pgbouncer-svc",
    "loadBalancerArnSuffix": "net/nlb/0123456789abcdef", "targetGroupArnSuffix": "targetgroup/tg/fedcba9876543210",
    "dbInstanceIdentifier": "lifeguard-db", "maxConnections": 415,
    "thresholds": {"clientsWaiting": 5, "dbConnectionsRatio": 0.9},
    "createAlarmTopic": True,
}


def test_observability_from_a_dict_of_wire_inputs(construct: Construct) -> None:
    response = construct("Observability", "obs", OBSERVABILITY_INPUTS)
    # The component registers the schema's token, so the SDK, the program and the state agree.
    assert type_and_name(response.urn) == ("lifeguard:index:Observability", "obs")
    children = {urn: typ for urn, typ in construct.registered().items() if "::obs-" in urn}
    assert all("lifeguard:index:Observability$" in urn for urn in children)
    alarms = {name: inputs for (typ, name), inputs in construct.mocks.inputs.items()
              if typ == "aws:cloudwatch/metricAlarm:MetricAlarm"}
    # Numbers came as doubles: 415 and 5 are whole and accepted; the nested type's names were mapped.
    assert alarms["obs-db-connections"]["threshold"] == 373  # floor(415 x 0.9)
    assert alarms["obs-clients-waiting"]["threshold"] == 5
    state = rpc.deserialize_properties(response.state)
    assert set(state) == {"dashboardName", "alarmArns", "alarmTopicArn"}
    assert set(state["alarmArns"]) == {"clients_waiting", "max_wait", "pooler_cpu", "unhealthy_targets",
                                       "db_connections", "certificate_expiry"}
    assert state["alarmTopicArn"].startswith(f"arn:aws:sns:{REGION}:{ACCOUNT}:")


def test_a_missing_required_input_is_named_before_anything_is_registered(construct: Construct) -> None:
    inputs = {k: v for k, v in OBSERVABILITY_INPUTS.items() if k != "maxConnections"}
    with pytest.raises(InputPropertyError, match="maxConnections"):
        construct("Observability", "obs", inputs)
    assert not construct.registered()


def test_a_bad_input_fails_the_construct_naming_the_field(construct: Construct) -> None:
    with pytest.raises(ComponentInitError, match="max_connections must be a whole number"):
        construct("Observability", "obs", {**OBSERVABILITY_INPUTS, "maxConnections": 415.5})
    assert not construct.registered()


def test_the_ca_key_stays_a_secret_across_the_provider(construct: Construct) -> None:
    response = construct("PoolerCertificateAuthority", "pooler-ca", {})
    assert type_and_name(response.urn) == ("lifeguard:index:PoolerCertificateAuthority", "pooler-ca")
    state = rpc.deserialize_properties(response.state, keep_unknowns=True)
    assert state["certPem"].startswith("-----BEGIN CERTIFICATE-----")
    assert state["layerArn"].startswith(f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:")
    # The engine gets the key wrapped as a secret: it is encrypted in the state, masked in the CLI.
    assert rpc.is_rpc_secret(state["privateKeyPem"])


VERIFIER = "SCRAM-SHA-256$16:c2FsdA==$c3RvcmVk:c2VydmVy"
POOLER_INPUTS: dict[str, Any] = {
    "vpcId": "vpc-0123456789abcdef0", "subnetIds": ["subnet-0a", "subnet-0b"],
    "loadBalancerSecurityGroupId": "sg-0nlb", "taskSecurityGroupId": "sg-0pooler",
    "databaseAddress": "db.c9akciq32.eu-west-1.rds.amazonaws.com", "dbName": "app", "maxConnections": 100,
    "username": "app_user", "verifier": VERIFIER,
    "caCertPem": "placeholder", "caPrivateKeyPem": "placeholder",
}


def test_the_pooler_from_a_dict_with_secrets(construct: Construct) -> None:
    from tests.infra import tls_mocks

    key = tls_mocks.private_key({"algorithm": "ECDSA", "ecdsaCurve": "P256"})["privateKeyPem"]
    ca = tls_mocks.self_signed({"privateKeyPem": key, "subject": {"commonName": "test CA"},
                                "isCaCertificate": True, "validityPeriodHours": 24,
                                "allowedUses": ["cert_signing", "crl_signing"]})["certPem"]
    response = construct("Pooler", "pooler", {**POOLER_INPUTS, "caCertPem": ca, "caPrivateKeyPem": key,
                                              "minTasks": 3, "maxTasks": 6},
                         secrets=frozenset({"verifier", "caPrivateKeyPem"}))
    assert type_and_name(response.urn) == ("lifeguard:index:Pooler", "pooler")
    inputs = construct.mocks.inputs
    service = inputs[("aws:ecs/service:Service", "pooler-service")]
    assert service["desiredCount"] == 3
    assert inputs[("aws:appautoscaling/target:Target", "pooler-scaling")]["maxCapacity"] == 6
    # The secrets that came over the wire are in no child's plain inputs: the CA key only in the certificate
    # it signs, the verifier only in its Secrets Manager secret, both as secrets.
    assert is_secret(inputs[("tls:index/locallySignedCert:LocallySignedCert", "pooler-tls-cert")]["caPrivateKeyPem"])
    for (typ, name), child_inputs in inputs.items():
        for path, text in walk_plain_strings(child_inputs):
            assert VERIFIER not in text and key not in text, f"{typ} {name}{path}"
    state = rpc.deserialize_properties(response.state)
    assert state["endpoint"].endswith(".elb.eu-west-1.amazonaws.com")
    assert state["metricsService"].startswith("lifeguard-dev-pgbouncer-")


def test_bad_pooler_sizing_names_the_fields(construct: Construct) -> None:
    with pytest.raises(ComponentInitError) as failure:
        construct("Pooler", "pooler", {**POOLER_INPUTS, "minTasks": 1, "cpu": 2048})
    message = str(failure.value)
    assert "min_tasks: must be at least 2" in message
    assert "cpu: must be at most 1024" in message
    assert "poolerMinTasks" not in message  # the args' words, not the sample stack's config keys
    assert not construct.registered()


# Pulumi AWS types with a `tags` input, and the children that have none; a new child type must be put in one.
TAGGABLE = frozenset({
    "aws:secretsmanager/secret:Secret", "aws:lb/loadBalancer:LoadBalancer",
    "aws:iam/serviceLinkedRole:ServiceLinkedRole", "aws:ecr/repository:Repository", "aws:ecs/cluster:Cluster",
    "aws:cloudwatch/logGroup:LogGroup", "aws:iam/role:Role",
    "aws:ecs/taskDefinition:TaskDefinition", "aws:lb/targetGroup:TargetGroup", "aws:lb/listener:Listener",
    "aws:ecs/service:Service", "aws:appautoscaling/target:Target",
})
NOT_TAGGABLE = frozenset({
    "aws:secretsmanager/secretVersion:SecretVersion", "aws:iam/rolePolicy:RolePolicy", "docker:index/image:Image",
    "aws:appautoscaling/policy:Policy", "aws:ecr/lifecyclePolicy:LifecyclePolicy",
    "tls:index/privateKey:PrivateKey", "tls:index/certRequest:CertRequest",
    "tls:index/locallySignedCert:LocallySignedCert", "random:index/randomPassword:RandomPassword",
    "lifeguard:image:ContainerImage", "lifeguard:tls:PoolerCertificate",
})


def test_the_pooler_tags_every_taggable_child(construct: Construct) -> None:
    from tests.infra import tls_mocks

    key = tls_mocks.private_key({"algorithm": "ECDSA", "ecdsaCurve": "P256"})["privateKeyPem"]
    ca = tls_mocks.self_signed({"privateKeyPem": key, "isCaCertificate": True, "validityPeriodHours": 24,
                                "allowedUses": ["cert_signing"]})["certPem"]
    tags = {"team": "payments", "env": "prod"}
    construct("Pooler", "pooler", {**POOLER_INPUTS, "caCertPem": ca, "caPrivateKeyPem": key, "tags": tags,
                                   "createEcsServiceLinkedRole": True})
    children = {(typ, name) for urn, typ in construct.registered().items()
                if (name := type_and_name(urn)[1]).startswith("pooler-")}
    kinds = {typ for typ, _ in children}
    undecided = sorted(kinds - TAGGABLE - NOT_TAGGABLE)
    assert not undecided, f"decide whether these take tags: {undecided}"
    assert kinds >= TAGGABLE
    for typ, name in children:
        if typ in TAGGABLE:
            assert construct.mocks.inputs[(typ, name)].get("tags") == tags, f"{typ} {name}"


def test_the_role_credentials_stay_secrets_across_the_provider(construct: Construct) -> None:
    response = construct("AppRoleCredentials", "app-role", {"username": "app_user", "scramIterations": 16})
    assert type_and_name(response.urn) == ("lifeguard:index:AppRoleCredentials", "app-role")
    state = rpc.deserialize_properties(response.state, keep_unknowns=True)
    assert set(state) == {"password", "verifier", "alternateVerifier", "activePassword"}
    assert all(rpc.is_rpc_secret(value) for value in state.values())
    assert rpc.unwrap_rpc_secret(state["verifier"]).startswith("SCRAM-SHA-256$16:")
    assert rpc.unwrap_rpc_secret(state["alternateVerifier"]).startswith("SCRAM-SHA-256$16:")
    # Before any rotation DATABASE_URL logs in as the application role.
    assert rpc.unwrap_rpc_secret(state["activePassword"]) == rpc.unwrap_rpc_secret(state["password"])


def test_the_network_from_a_dict_its_enum_as_the_wire_sends_it(construct: Construct) -> None:
    response = construct("Network", "network", {"availabilityZones": ["eu-west-1a", "eu-west-1b"],
                                                "apiAccess": "endpoints", "tags": {"team": "payments"}})
    assert type_and_name(response.urn) == ("lifeguard:index:Network", "network")
    endpoints = [name for typ, name in construct.mocks.inputs if typ == "aws:ec2/vpcEndpoint:VpcEndpoint"]
    assert len(endpoints) == 5  # the enum's value reached the component as AwsApiAccess.ENDPOINTS
    state = rpc.deserialize_properties(response.state)
    assert state["vpcId"] == "vpc-0123456789abcdef0" and len(state["privateSubnetIds"]) == 2
