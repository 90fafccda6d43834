"""Run a user's Pulumi program (its ``__main__.py``) under the suite's strict mocks, in the interpreter of the
virtualenv the lifeguard wheel was installed into, and write what it registered as JSON.

Run by tests/examples/test_examples.py as ``python -m tests.examples.runner SPEC OUT`` with the working
directory set to the program's folder and only a copy of the mock harness on PYTHONPATH (tests/ is not in
the wheel); the library itself comes from site-packages. SPEC (JSON) holds ``project``, ``stack``,
``config`` (qualified keys), ``subnets`` (existing subnet id -> [vpc id, AZ]), ``clusters`` (existing Aurora
cluster id -> what ``aws.rds.get_cluster`` answers) and ``stack_references`` (stack name -> its outputs), the
latter read by ``pulumi.StackReference`` through the engine's ``pulumi:pulumi:StackReference`` resource,
whose state the mocks answer here.
"""

from __future__ import annotations

import json
import runpy
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import MockCallArgs, MockResourceArgs

from tests.infra.infra_harness import CallResult, RecordingMonitor, StrictMocks, UnmockedCall, _registrations

STACK_REFERENCE = "pulumi:pulumi:StackReference"
GET_CLUSTER = "aws:rds/getCluster:getCluster"


@dataclass
class ExampleMocks(StrictMocks):
    stack_references: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Outputs of the stacks the program references, by fully qualified stack name."""
    clusters: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Existing Aurora clusters by identifier: ``aws.rds.get_cluster``'s answer (camelCase keys)."""

    def call(self, args: MockCallArgs) -> CallResult:  # type: ignore[override]
        identifier = str(args.args.get("clusterIdentifier"))
        if args.token != GET_CLUSTER or identifier not in self.clusters:
            return super().call(args)
        with self._lock:
            self.calls.append((args.token, dict(args.args)))
        return {"id": identifier, "clusterIdentifier": identifier, **self.clusters[identifier]}

    def new_resource(self, args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
        if args.typ != STACK_REFERENCE:
            return super().new_resource(args)
        name = str(args.inputs.get("name"))
        if name not in self.stack_references:
            raise UnmockedCall(f"StackReference to a stack the test does not know: {name}")
        return name, {"name": name, "outputs": self.stack_references[name], "secretOutputNames": []}


def plain(value: Any) -> Any:
    """JSON for what the mocks recorded: assets and archives as their kind and path (or names), else text."""
    if isinstance(value, pulumi.FileArchive | pulumi.FileAsset):
        return {type(value).__name__: value.path}
    if isinstance(value, pulumi.AssetArchive):
        return {"AssetArchive": sorted(value.assets)}
    if isinstance(value, pulumi.StringAsset):
        return {"StringAsset": value.text}
    return str(value)


def main(spec_path: str, out_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    program = Path.cwd()
    mocks = ExampleMocks(subnets={k: (v[0], v[1]) for k, v in spec.get("subnets", {}).items()},
                         stack_references=spec.get("stack_references", {}), clusters=spec.get("clusters", {}))
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project=spec["project"], stack=spec["stack"], preview=False, monitor=monitor)
    pulumi.runtime.set_all_config(spec.get("config", {}))
    exported: dict[str, Any] = {}
    # The program's exports, resolved below; the mock engine has no stack outputs to read them back from.
    pulumi.export = exported.__setitem__  # type: ignore[assignment]
    outputs: dict[str, Any] = {}
    secret_outputs: list[str] = []

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def run() -> Any:
        # As Pulumi's language host runs a program folder: its own modules importable, run as __main__.
        sys.path.insert(0, str(program))
        runpy.run_path(str(program / "__main__.py"), run_name="__main__")

        async def resolve() -> None:
            for key, value in exported.items():
                output = pulumi.Output.from_input(value)
                outputs[key] = await output.future()
                if await output.is_secret():
                    secret_outputs.append(key)

        return resolve()

    run()
    resources = []
    for resource in _registrations(mocks, monitor):
        record = asdict(resource)
        record["dependencies"] = sorted(resource.dependencies)
        record["replace_with"] = sorted(resource.replace_with)
        record["aliases"] = [str(alias) for alias in resource.aliases]
        resources.append(record)
    modules = {name: getattr(module, "__file__", None) for name, module in sorted(sys.modules.items())}
    Path(out_path).write_text(json.dumps({
        "resources": resources, "outputs": outputs, "secret_outputs": secret_outputs,
        "calls": mocks.calls, "sys_path": sys.path, "modules": modules,
    }, default=plain))


if __name__ == "__main__":
    main(*sys.argv[1:])
