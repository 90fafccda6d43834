"""Run an example program from examples/ the way a user would: copied out of the repository, in the
virtualenv the wheel was installed into, under the suite's strict mocks (tests/examples/runner.py).

And the questions the tests ask of what it registered: which secrets a function's role can read, judged
by moto's IAM policy evaluator from the policies the program attached (tests/infra/test_infra_iam.py judges
the sample stack's roles the same way).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from moto.iam.access_control import IAMPolicy, PermissionResult

from tests.examples.installed import REPO_ROOT, Installed, snapshot
from tests.infra.infra_harness import ProgramRun, Resource

EXAMPLES = REPO_ROOT / "examples"
REPO_SKIP = (".git", ".venv", ".tools")
# AWS's managed policies a function's role may carry besides the client's: logs and the VPC's network
# interfaces, no Secrets Manager. Any other managed policy fails the check (it could read any secret).
AWS_MANAGED = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole",
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
}


class ExampleFailed(AssertionError):
    pass


def run_example(installed: Installed, name: str, workdir: Path, spec: Mapping[str, Any]) -> ProgramRun:
    """``examples/<name>`` copied into ``workdir`` and run there; nothing may be written to the repository
    or to the virtualenv's site-packages meanwhile."""
    program = workdir / name
    shutil.copytree(EXAMPLES / name, program, ignore=shutil.ignore_patterns("__pycache__", "build", "venv"))
    spec_file, out_file = workdir / f"{name}.spec.json", workdir / f"{name}.run.json"
    spec_file.write_text(json.dumps(spec))
    site_before = snapshot(installed.site_packages)
    repo_before = snapshot(REPO_ROOT, skip=REPO_SKIP)
    result = installed.run(
        ["-m", "tests.examples.runner", str(spec_file), str(out_file)], cwd=program,
        env={"PYTHONPATH": os.pathsep.join((str(installed.harness), str(installed.harness / "deps")))},
    )
    if result.returncode != 0:
        raise ExampleFailed(f"examples/{name} failed under the mocks:\n{result.stderr[-6000:]}")
    assert snapshot(installed.site_packages) == site_before, "the program wrote into site-packages"
    assert snapshot(REPO_ROOT, skip=REPO_SKIP) == repo_before, "the program wrote into the repository"
    data = json.loads(out_file.read_text())
    loaded_from_repo = sorted(module for module, file in data["modules"].items()
                              if file and Path(file).resolve().is_relative_to(REPO_ROOT))
    assert not loaded_from_repo, f"modules loaded from the checkout: {loaded_from_repo}"
    site = installed.site_packages.resolve()
    assert Path(data["modules"]["lifeguard.aws"]).resolve().is_relative_to(site)
    resources = [Resource(**{**r, "dependencies": frozenset(r["dependencies"]),
                             "replace_with": frozenset(r["replace_with"]), "aliases": tuple(r["aliases"]),
                             "ignore_changes": tuple(r["ignore_changes"])})
                 for r in data["resources"]]
    return ProgramRun(resources=resources, outputs=data["outputs"], secret_outputs=set(data["secret_outputs"]),
                      calls=[(token, args) for token, args in data["calls"]])


def role_of(run: ProgramRun, function: Resource) -> Resource:
    arn = function.input("role")
    [role] = [r for r in run.of_type("aws:iam/role:Role") if r.state.get("arn") == arn]
    return role


def role_policies(run: ProgramRun, role: Resource) -> tuple[list[dict[str, Any]], set[str]]:
    """The policy documents the program gives ``role`` (inline, and its own managed policies attached), and
    the AWS-managed policy ARNs attached to it."""
    role_name = role.state["name"]
    documents = [json.loads(p.input("policy")) for p in run.of_type("aws:iam/rolePolicy:RolePolicy")
                 if p.input("role") == role_name]
    assert "inlinePolicies" not in role.inputs and "managedPolicyArns" not in role.inputs
    own = {p.state["arn"]: p for p in run.of_type("aws:iam/policy:Policy")}
    aws_managed: set[str] = set()
    for attachment in run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment"):
        if attachment.input("role") != role_name:
            continue
        arn = attachment.input("policyArn")
        if arn in own:
            documents.append(json.loads(own[arn].input("policy")))
        else:
            aws_managed.add(arn)
    return documents, aws_managed


def permitted(documents: list[dict[str, Any]], action: str, resource: str) -> bool:
    results = [IAMPolicy(json.dumps(doc)).is_action_permitted(action, resource) for doc in documents]
    return PermissionResult.DENIED not in results and PermissionResult.PERMITTED in results


def secret_actions(documents: list[dict[str, Any]]) -> set[str]:
    """Every Secrets Manager action an Allow statement names."""
    actions: set[str] = set()
    for document in documents:
        for statement in document["Statement"]:
            if statement["Effect"] == "Allow":
                listed = statement["Action"]
                actions.update(a for a in ([listed] if isinstance(listed, str) else listed)
                               if a.lower().startswith("secretsmanager:") or a == "*")
    return actions
