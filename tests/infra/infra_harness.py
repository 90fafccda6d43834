"""Run the whole Pulumi program under strict mocks and hand back plain data to assert on.

- ``set_mocks(..., preview=False)`` before the program is imported or built, so every ``apply``
  runs (with ``preview=True`` unmocked outputs stay unknown and assertions inside applies never run).
- ``call`` is strict: an unmocked data source raises instead of silently returning ``None``s.
- Every registration is recorded with its parent, inputs and the state the mock returned, and
  the stack outputs are resolved together with their secretness.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import MockCallArgs, MockResourceArgs, Mocks
from pulumi.runtime.mocks import MockMonitor

from tests.infra import tls_mocks

REPO_ROOT = Path(__file__).resolve().parents[2]
PROJECT = "lifeguard"
REGION = "eu-west-1"
ACCOUNT = "123456789012"
# The password the mocked RandomPassword "generates": characters that must be percent-encoded
# in a URL, so the tests see the quoting work, and distinctive enough to search for leaks.
MOCK_PASSWORD = "Zq7@pass/word:with+odd#chars%"
# The application role's (its own RandomPassword): ASCII, as its SCRAM verifier requires.
MOCK_APP_PASSWORD = "Ap9@app/pass:more+odd#chars%"
APP_PASSWORD_RESOURCE = "app-role-password"
# Pulumi's wire marker for a secret value inside resource inputs.
SECRET_SIG = "4dabf18193072939515e22adb298388d"
ROOT_STACK_TYPE = "pulumi:pulumi:Stack"


class UnmockedCall(AssertionError):
    """The program called a data source the tests do not know: mock it deliberately."""


@dataclass
class Resource:
    type: str
    name: str
    urn: str
    parent: str
    custom: bool
    inputs: dict[str, Any]
    state: dict[str, Any]
    id: str
    dependencies: frozenset[str] = frozenset()
    """URNs this registration waits for: ``depends_on`` and the resources its inputs came from."""
    retain_on_delete: bool = False
    ignore_changes: tuple[str, ...] = ()
    protect: bool = False
    replace_with: frozenset[str] = frozenset()
    """URNs whose replacement replaces this resource too (``replace_with``)."""
    aliases: tuple[Any, ...] = ()
    """The registration's alias specs (``pulumi.alias_pb2.Alias``), resolved by tests/infra/continuity.py."""

    def input(self, key: str) -> Any:
        """An input with any secret wrapper removed."""
        return unwrap(self.inputs.get(key))


@dataclass
class ProgramRun:
    resources: list[Resource]
    outputs: dict[str, Any]
    secret_outputs: set[str]
    calls: list[tuple[str, dict[str, Any]]]

    def of_type(self, type_: str) -> list[Resource]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str, name_contains: str = "") -> Resource:
        found = [r for r in self.of_type(type_) if name_contains in r.name]
        assert len(found) == 1, f"expected one {type_} named *{name_contains}*, found {[r.name for r in found]}"
        return found[0]

    def dependencies(self, resource: Resource) -> frozenset[str]:
        return resource.dependencies

    def by_urn(self, urn: str) -> Resource:
        return next(r for r in self.resources if r.urn == urn)

    def by_id(self, id_: str) -> Resource:
        found = [r for r in self.resources if r.id == id_]
        assert len(found) == 1, f"no single resource has id {id_!r}"
        return found[0]

    def by_state(self, key: str, value: Any) -> Resource:
        found = [r for r in self.resources if r.state.get(key) == value]
        assert len(found) == 1, f"expected one resource with {key}={value!r}, found {len(found)}"
        return found[0]


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SECRET_SIG) == "1b47061264138c4ac30d75fd1eb44270"


def unwrap(value: Any) -> Any:
    """Remove secret wrappers anywhere in ``value``."""
    if is_secret(value):
        return unwrap(value["value"])
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def walk_plain_strings(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every string in ``value`` that is *not* inside a secret wrapper, with where it was found."""
    if is_secret(value):
        return
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from walk_plain_strings(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from walk_plain_strings(item, f"{path}[{index}]")


CallResult = dict[str, Any] | tuple[dict[str, Any], list[tuple[str, str]]]
"""A data source's answer, or (as the engine reports a provider's refusal) an empty one with its failures."""


@dataclass
class StrictMocks(Mocks):
    region: str = REGION
    zones: tuple[str, ...] = (f"{REGION}a", f"{REGION}b", f"{REGION}c")
    subnets: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    """Existing subnets for ``getSubnet``: id -> (vpc id, AZ)."""
    passwords: Mapping[str, str] = field(default_factory=lambda: {APP_PASSWORD_RESOURCE: MOCK_APP_PASSWORD})
    """What each RandomPassword (by resource name) "generates"; others get ``MOCK_PASSWORD``."""
    ecs_service_linked_role: bool = True
    """Whether the account already has AWSServiceRoleForECS (a brand-new account does not)."""
    stack_references: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Other stacks' outputs, by stack name, for ``pulumi.StackReference``."""
    deployed_outputs: Mapping[str, Any] = field(default_factory=dict)
    """The stack's outputs from its last ``up`` (``pulumi:pulumi:readStackOutputs``); empty: a new stack."""
    db_instances: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Existing RDS instances for ``getInstance``: identifier -> what AWS answers (camelCase keys)."""
    db_clusters: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Existing Aurora clusters for ``getCluster``: identifier -> what AWS answers (camelCase keys)."""
    parameters: Mapping[str, str] = field(default_factory=dict)
    """SSM parameters for ``getParameter``: name -> value (the migration job's record of a rotation); any other
    name is not found, as in AWS."""
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    inputs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- data sources -------------------------------------------------------------------

    def call(self, args: MockCallArgs) -> CallResult:  # type: ignore[override]
        handlers: dict[str, Callable[[dict[str, Any]], CallResult]] = {
            "aws:index/getRegion:getRegion": self._region,
            "aws:index/getAvailabilityZones:getAvailabilityZones": self._zones,
            "aws:ec2/getSubnet:getSubnet": self._subnet,
            "aws:ecr/getAuthorizationToken:getAuthorizationToken": self._ecr_token,
            "aws:index/getCallerIdentity:getCallerIdentity": self._caller,
            "aws:iam/getRoles:getRoles": self._roles,
            "pulumi:pulumi:readStackOutputs": self._stack_outputs,
            "aws:rds/getInstance:getInstance": self._db_instance,
            "aws:rds/getCluster:getCluster": self._db_cluster,
            "aws:ssm/getParameter:getParameter": self._parameter,
        }
        handler = handlers.get(args.token)
        if handler is None:
            raise UnmockedCall(f"unmocked data source {args.token}({args.args})")
        with self._lock:
            self.calls.append((args.token, dict(args.args)))
        # Keys are camelCase, as the engine sends them; snake_case would resolve to None.
        return handler(dict(args.args))

    def _region(self, _: dict[str, Any]) -> dict[str, Any]:
        return {"id": self.region, "region": self.region, "name": self.region,
                "description": "mock region", "endpoint": f"ec2.{self.region}.amazonaws.com"}

    def _zones(self, _: dict[str, Any]) -> dict[str, Any]:
        count = len(self.zones)
        return {"id": self.region, "names": list(self.zones), "zoneIds": [f"euw1-az{i}" for i in range(count)],
                "groupNames": [self.region] * count, "state": "available"}

    def _subnet(self, args: dict[str, Any]) -> dict[str, Any]:
        subnet_id = str(args.get("id"))
        if subnet_id not in self.subnets:
            raise UnmockedCall(f"getSubnet for unknown subnet {subnet_id}")
        vpc_id, zone = self.subnets[subnet_id]
        return {"id": subnet_id, "vpcId": vpc_id, "availabilityZone": zone, "cidrBlock": "10.0.0.0/24",
                "arn": f"arn:aws:ec2:{self.region}:{ACCOUNT}:subnet/{subnet_id}"}

    def _db_instance(self, args: dict[str, Any]) -> dict[str, Any]:
        identifier = str(args.get("dbInstanceIdentifier"))
        if identifier not in self.db_instances:
            raise UnmockedCall(f"getInstance for unknown instance {identifier}")
        return {"id": identifier, "dbInstanceIdentifier": identifier, **self.db_instances[identifier]}

    def _db_cluster(self, args: dict[str, Any]) -> dict[str, Any]:
        identifier = str(args.get("clusterIdentifier"))
        if identifier not in self.db_clusters:
            raise UnmockedCall(f"getCluster for unknown cluster {identifier}")
        return {"id": identifier, "clusterIdentifier": identifier, **self.db_clusters[identifier]}

    def _parameter(self, args: dict[str, Any]) -> CallResult:
        name = str(args.get("name"))
        if name not in self.parameters:
            # As the provider's error reaches the program: a failed invoke the caller may catch (a raised
            # exception here would fail the whole run, which AWS's answer does not).
            return {}, [("name", f"ParameterNotFound: {name}")]
        return {"id": name, "name": name, "value": self.parameters[name], "insecureValue": self.parameters[name],
                "type": "String", "version": 2, "withDecryption": True,
                "arn": f"arn:aws:ssm:{self.region}:{ACCOUNT}:parameter/{name.lstrip('/')}"}

    def _roles(self, args: dict[str, Any]) -> dict[str, Any]:
        assert args.get("pathPrefix") == "/aws-service-role/ecs.amazonaws.com/", args
        names = ["AWSServiceRoleForECS"] if self.ecs_service_linked_role else []
        return {"id": self.region, "names": names,
                "arns": [f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/ecs.amazonaws.com/{n}" for n in names]}

    def _stack_outputs(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"name": args["name"], "outputs": dict(self.deployed_outputs), "secretOutputNames": []}

    def _caller(self, _: dict[str, Any]) -> dict[str, Any]:
        return {"id": ACCOUNT, "accountId": ACCOUNT, "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/deployer/ci",
                "userId": "AROAEXAMPLE:ci"}

    def _ecr_token(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"id": self.region, "registryId": args.get("registryId", ACCOUNT), "userName": "AWS",
                "password": "mock-ecr-token", "authorizationToken": "QVdTOm1vY2stZWNyLXRva2Vu",
                "proxyEndpoint": f"https://{ACCOUNT}.dkr.ecr.{self.region}.amazonaws.com",
                "expiresAt": "2030-01-01T00:00:00Z"}

    # -- resources ----------------------------------------------------------------------

    def new_resource(self, args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
        with self._lock:
            self.inputs[(args.typ, args.name)] = dict(args.inputs)
        computed = self._computed(args.typ, args.name, unwrap(dict(args.inputs)))
        return computed.pop("id", f"{args.name}-id"), {**args.inputs, **computed}

    def _computed(self, typ: str, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        r, a = self.region, ACCOUNT
        physical = f"{name}-0a1b2c3"
        if typ == "aws:secretsmanager/secret:Secret":
            secret_name = f"{inputs.get('namePrefix', name)}AbCdEf"
            return {"name": secret_name, "arn": f"arn:aws:secretsmanager:{r}:{a}:secret:{secret_name}-Xy12Z3"}
        if typ == "aws:secretsmanager/secretVersion:SecretVersion":
            # As Secrets Manager does: a new value is a new version.
            version = hashlib.sha256(repr(inputs.get("secretString")).encode()).hexdigest()[:32]
            return {"versionId": version, "arn": f"{inputs.get('secretId')}|{version}"}
        if typ == "aws:iam/role:Role":
            return {"name": physical, "arn": f"arn:aws:iam::{a}:role/{physical}", "id": physical}
        if typ == "aws:ssm/parameter:Parameter":
            return {"arn": f"arn:aws:ssm:{r}:{a}:parameter/{str(inputs['name']).lstrip('/')}", "id": inputs["name"]}
        if typ == "aws:iam/rolePolicy:RolePolicy":
            return {"name": physical}
        if typ == "pulumi:pulumi:StackReference":
            referenced = inputs["name"]
            if referenced not in self.stack_references:
                raise UnmockedCall(f"StackReference to unknown stack {referenced}")
            return {"outputs": dict(self.stack_references[referenced]), "secretOutputNames": []}
        if typ == "aws:iam/policy:Policy":
            return {"name": physical, "arn": f"arn:aws:iam::{a}:policy/{physical}"}
        if typ == "aws:cloudwatch/logGroup:LogGroup":
            return {"name": physical, "arn": f"arn:aws:logs:{r}:{a}:log-group:{physical}"}
        if typ == "aws:ecr/repository:Repository":
            return {"name": physical, "arn": f"arn:aws:ecr:{r}:{a}:repository/{physical}", "registryId": a,
                    "repositoryUrl": f"{a}.dkr.ecr.{r}.amazonaws.com/{physical}"}
        if typ == "docker:index/image:Image":
            image_name = inputs["imageName"]
            digest = hashlib.sha256(image_name.encode()).hexdigest()
            return {"repoDigest": f"{image_name.rsplit(':', 1)[0]}@sha256:{digest}", "baseImageName": image_name}
        if typ == "aws:ecs/cluster:Cluster":
            return {"name": physical, "arn": f"arn:aws:ecs:{r}:{a}:cluster/{physical}"}
        if typ == "aws:ecs/taskDefinition:TaskDefinition":
            family = inputs["family"]
            return {"arn": f"arn:aws:ecs:{r}:{a}:task-definition/{family}:1", "revision": 1}
        if typ == "aws:ecs/service:Service":
            return {"name": physical}
        if typ == "aws:lb/loadBalancer:LoadBalancer":
            # arnSuffix: what follows ":loadbalancer/" (CloudWatch's LoadBalancer dimension).
            return {"arn": f"arn:aws:elasticloadbalancing:{r}:{a}:loadbalancer/net/{physical}/0123456789abcdef",
                    "arnSuffix": f"net/{physical}/0123456789abcdef",
                    "dnsName": f"{physical}-0123456789abcdef.elb.{r}.amazonaws.com", "zoneId": "Z2IFOLAFXWLO4F"}
        if typ == "aws:lb/targetGroup:TargetGroup":
            return {"arn": f"arn:aws:elasticloadbalancing:{r}:{a}:targetgroup/{physical}/fedcba9876543210",
                    "arnSuffix": f"targetgroup/{physical}/fedcba9876543210"}
        if typ == "aws:lb/listener:Listener":
            return {"arn": f"arn:aws:elasticloadbalancing:{r}:{a}:listener/net/{physical}/01/23"}
        if typ == "aws:rds/instance:Instance":
            address = f"{physical}.c9akciq32.{r}.rds.amazonaws.com"
            managed = {"masterUserSecrets": [{
                "secretArn": f"arn:aws:secretsmanager:{r}:{a}:secret:rds!db-0a1b2c3d-4e5f-AbCdEf",
                "kmsKeyId": f"arn:aws:kms:{r}:{a}:key/0a1b2c3d", "secretStatus": "active"}]
            } if inputs.get("manageMasterUserPassword") else {}
            return {"address": address, "port": 5432, "endpoint": f"{address}:5432",
                    "arn": f"arn:aws:rds:{r}:{a}:db:{physical}", "identifier": physical, **managed}
        if typ in ("aws:rds/parameterGroup:ParameterGroup", "aws:rds/subnetGroup:SubnetGroup"):
            return {"name": physical, "arn": f"arn:aws:rds:{r}:{a}:pg:{physical}"}
        if typ == "random:index/randomPassword:RandomPassword":
            return {"result": self.passwords.get(name, MOCK_PASSWORD)}
        if typ == "random:index/randomId:RandomId":
            return {"hex": "a1b2c3d4"}
        # pulumi-tls: real keys and certificates from the program's inputs (the image tier runs them).
        if typ == "tls:index/privateKey:PrivateKey":
            return tls_mocks.private_key(inputs)
        if typ == "tls:index/certRequest:CertRequest":
            return tls_mocks.cert_request(inputs)
        if typ == "tls:index/selfSignedCert:SelfSignedCert":
            return tls_mocks.self_signed(inputs)
        if typ == "tls:index/locallySignedCert:LocallySignedCert":
            return tls_mocks.locally_signed(inputs)
        if typ == "aws:lambda/layerVersion:LayerVersion":
            return {"arn": f"arn:aws:lambda:{r}:{a}:layer:{inputs['layerName']}:1",
                    "layerArn": f"arn:aws:lambda:{r}:{a}:layer:{inputs['layerName']}"}
        if typ == "aws:lambda/function:Function":
            return {"name": physical, "arn": f"arn:aws:lambda:{r}:{a}:function:{physical}"}
        if typ == "aws:ec2/vpcEndpoint:VpcEndpoint" and inputs.get("vpcEndpointType") == "Gateway":
            return {"prefixListId": "pl-6da54004"}
        if typ == "aws:ec2/vpc:Vpc":
            return {"id": "vpc-0123456789abcdef0"}
        # Without an arn the dashboard's alarm widget would list nulls, which CloudWatch rejects.
        if typ == "aws:cloudwatch/metricAlarm:MetricAlarm":
            return {"arn": f"arn:aws:cloudwatch:{r}:{a}:alarm:{physical}"}
        if typ == "aws:cloudwatch/dashboard:Dashboard":
            return {"dashboardArn": f"arn:aws:cloudwatch::{a}:dashboard/{inputs['dashboardName']}"}
        if typ == "aws:sns/topic:Topic":
            return {"name": physical, "arn": f"arn:aws:sns:{r}:{a}:{physical}"}
        if typ == "aws:sns/topicSubscription:TopicSubscription":
            return {"arn": f"arn:aws:sns:{r}:{a}:{physical}:0123abcd-4567-89ef-0123-456789abcdef"}
        return {}


class RecordingMonitor(MockMonitor):
    """A MockMonitor that also remembers each registration's parent and whether it is custom."""

    def __init__(self, mocks: StrictMocks) -> None:
        super().__init__(mocks)
        self.meta: dict[tuple[str, str], tuple[str, bool]] = {}
        self.dependencies: dict[tuple[str, str], frozenset[str]] = {}
        self.retained: set[tuple[str, str]] = set()
        self.ignore_changes: dict[tuple[str, str], tuple[str, ...]] = {}
        self.protected: set[tuple[str, str]] = set()
        self.replace_with: dict[tuple[str, str], frozenset[str]] = {}
        self.aliases: dict[tuple[str, str], tuple[Any, ...]] = {}
        self._meta_lock = threading.Lock()

    def RegisterResource(self, request: Any) -> Any:  # the gRPC method's name, hence not snake_case
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        with self._meta_lock:
            self.meta[(request.type, request.name)] = (request.parent, bool(request.custom))
            self.dependencies[(request.type, request.name)] = frozenset(request.dependencies)
            if request.retainOnDelete:
                self.retained.add((request.type, request.name))
            self.ignore_changes[(request.type, request.name)] = tuple(request.ignoreChanges)
            if request.protect:
                self.protected.add((request.type, request.name))
            self.replace_with[(request.type, request.name)] = frozenset(request.replace_with)
            self.aliases[(request.type, request.name)] = tuple(request.aliases)
        return response


def example_stack_config() -> dict[str, str]:
    """The committed example stack's config, as the engine would pass it."""
    document = yaml.safe_load((REPO_ROOT / "Pulumi.dev.yaml").read_text())
    return {key: str(value) for key, value in document["config"].items()}


def qualified(config: Mapping[str, Any]) -> dict[str, str]:
    return {key if ":" in key else f"{PROJECT}:{key}": str(value) for key, value in config.items()}


def run_program(
    config: Mapping[str, Any],
    build_dir: Path,
    mocks: StrictMocks | None = None,
    stack: str = "dev",
    repo_root: Path = REPO_ROOT,
    organization: str | None = None,
) -> ProgramRun:
    """Build the whole stack with ``config`` (short or ``lifeguard:``-qualified keys).

    Raises whatever the program raises (an ``InfraConfigError`` for bad config); the registrations made
    until then stay readable through ``last_registrations``.
    """

    def program() -> Mapping[str, Any]:
        # Imported only after set_mocks, so nothing in the program can run against a real engine. NODE here,
        # not at the top: tests/examples/runner.py imports these mocks in a virtualenv holding only the
        # wheel and its infra extra, without the local stack that tests.support loads.
        from infra.program import ProgramPaths, build
        from lifeguard.aws.config import load
        from tests.support import NODE

        return build(load(), ProgramPaths(repo_root=repo_root, build_dir=build_dir, node=NODE))

    return run_mocked(program, config, mocks, stack=stack, organization=organization)


def run_mocked(
    program: Callable[[], Mapping[str, Any]],
    config: Mapping[str, Any] | None = None,
    mocks: StrictMocks | None = None,
    stack: str = "dev",
    organization: str | None = None,
) -> ProgramRun:
    """Run ``program`` (any Pulumi program: it returns its outputs) under strict mocks and record it."""
    mocks = mocks or StrictMocks()
    monitor = RecordingMonitor(mocks)
    _LAST.clear()
    _LAST.append((mocks, monitor))
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor,
                             organization=organization)
    pulumi.runtime.set_all_config(qualified(config or {}))

    outputs: dict[str, Any] = {}
    secret_outputs: set[str] = set()

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def run() -> Any:
        stack_outputs = program()

        async def resolve() -> None:
            for key, value in stack_outputs.items():
                output = pulumi.Output.from_input(value)
                outputs[key] = await output.future()
                if await output.is_secret():
                    secret_outputs.add(key)

        return resolve()

    run()
    return ProgramRun(resources=_registrations(mocks, monitor), outputs=outputs,
                      secret_outputs=secret_outputs, calls=list(mocks.calls))


_LAST: list[tuple[StrictMocks, RecordingMonitor]] = []


def last_registrations() -> list[Resource]:
    """What the most recent :func:`run_program` registered, even when it raised."""
    mocks, monitor = _LAST[-1]
    return _registrations(mocks, monitor)


def _registrations(mocks: StrictMocks, monitor: RecordingMonitor) -> list[Resource]:
    resources = []
    for urn, registration in monitor.get_registered_resources().items():
        type_ = urn.split("::")[2].split("$")[-1]
        name = urn.split("::")[3]
        parent, custom = monitor.meta.get((type_, name), ("", True))
        resources.append(Resource(
            type=type_, name=name, urn=urn, parent=parent, custom=custom,
            inputs=mocks.inputs.get((type_, name), {}), state=dict(registration.state), id=registration.id,
            dependencies=monitor.dependencies.get((type_, name), frozenset()),
            retain_on_delete=(type_, name) in monitor.retained,
            ignore_changes=monitor.ignore_changes.get((type_, name), ()),
            protect=(type_, name) in monitor.protected,
            replace_with=monitor.replace_with.get((type_, name), frozenset()),
            aliases=monitor.aliases.get((type_, name), ()),
        ))
    return resources
