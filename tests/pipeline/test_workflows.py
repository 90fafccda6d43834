"""The GitHub Actions workflows: valid, wired in the right order, and calling only commands that exist.

They cannot run here, so every promise the docs make about them is checked on the files: the
schema GitHub validates against, job order, concurrency, OIDC instead of keys, pinned versions,
and every ``lifeguard`` command line parsed by the real parser.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from lifeguard.cli import build_parser

WORKFLOWS = Path(__file__).resolve().parents[2] / ".github" / "workflows"
FILES = sorted(WORKFLOWS.glob("*.yml"))
# The one place users configure the pipeline (repository settings), as docs/pipeline.md says.
SETTINGS_VARS = {"PULUMI_STACK", "AWS_REGION", "AWS_ROLE_ARN", "AWS_PREVIEW_ROLE_ARN", "DEPLOY_WITH_ENVIRONMENTS",
                 "LIFEGUARD_SMOKE_FUNCTION", "LIFEGUARD_SMOKE_PAYLOAD"}
SETTINGS_SECRETS = {"PULUMI_ACCESS_TOKEN", "PULUMI_PREVIEW_ACCESS_TOKEN", "GITHUB_TOKEN"}
# Each workflow's credentials: a pull request's code runs under `pulumi preview`, so the preview
# has its own read-only role and token and may not even name the deploy ones.
CREDENTIALS = {
    "deploy.yml": ("AWS_ROLE_ARN", "PULUMI_ACCESS_TOKEN"),
    "preview.yml": ("AWS_PREVIEW_ROLE_ARN", "PULUMI_PREVIEW_ACCESS_TOKEN"),
    # The same pair, read from a GitHub environment (docs/pipeline.md, "Several stacks").
    "deploy-stage.yml": ("AWS_ROLE_ARN", "PULUMI_ACCESS_TOKEN"),
    "preview-environments.yml": ("AWS_PREVIEW_ROLE_ARN", "PULUMI_PREVIEW_ACCESS_TOKEN"),
}
# Of those, the ones whose settings live in GitHub environments rather than the repository.
ENVIRONMENT_WORKFLOWS = {"deploy-stage.yml", "preview-environments.yml"}
# Only calls deploy-stage.yml, once per stage: no steps, no credentials of its own.
STAGES_WORKFLOW = "deploy-environments.yml"
STEP_FILES = [path for path in FILES if path.name in CREDENTIALS]
PULUMI_COMMANDS = {"preview", "up", "refresh", "destroy", "output"}
AWS_CREDENTIALS = "aws-actions/configure-aws-credentials"
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
# The runner's own variables a run script may use, with sample values (what the parser sees in CI).
RUNNER_VARIABLES = {"GITHUB_RUN_ID": "12345678901", "GITHUB_RUN_ATTEMPT": "1"}
# The smoke step's variables (LIFEGUARD_SMOKE_*, as its env names them), with sample values.
SMOKE_VARIABLES = {"SMOKE_FUNCTION": "acme-api-health", "SMOKE_PAYLOAD": "{}"}
# `uses: owner/repo@<full commit SHA> # vX.Y.Z`: immutable, with the version Dependabot updates.
# A job calling a workflow of this repository, in GitHub's self-repository form (zizmor's self-repository).
OWN_WORKFLOW = re.compile(r"^\s*uses: \$/\.github/workflows/([\w.-]+\.yml)$")
PINNED_USES = re.compile(r"^\s*(?:- )?uses: ([\w.-]+/[\w./-]+)@([0-9a-f]{40}) # v\d+\.\d+\.\d+$")


def load(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    # YAML 1.1 (PyYAML) reads the key `on` as the boolean true.
    if True in document:
        document["on"] = document.pop(True)
    return document


def workflow(name: str) -> dict[str, Any]:
    return load(WORKFLOWS / name)


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return list(job.get("steps", []))


def action(step: dict[str, Any]) -> str:
    return str(step.get("uses", "")).split("@")[0]


def resolve(value: Any, env: dict[str, Any]) -> Any:
    """``${{ env.NAME }}`` replaced by the workflow env's value (as YAML typed it)."""
    match = re.fullmatch(r"\$\{\{\s*env\.(\w+)\s*\}\}", str(value))
    return env[match.group(1)] if match else value


def lifeguard_commands(job: dict[str, Any]) -> Iterator[list[str]]:
    """Every ``lifeguard ...`` argv in the job's run scripts, with ${{ }} expressions as placeholders."""
    for step in steps(job):
        script = EXPRESSION.sub("EXPR", str(step.get("run", "")))
        for name, value in {**RUNNER_VARIABLES, **SMOKE_VARIABLES}.items():
            script = script.replace(f"${name}", value)
        for line in script.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            for index, word in enumerate(words):
                if word == "lifeguard":
                    argv = []
                    for arg in words[index + 1:]:
                        if arg in {"&&", "||", ";", "|"}:
                            break
                        argv.append(arg)
                    yield argv


def job_running(document: dict[str, Any], command: str) -> str:
    names = [name for name, job in document["jobs"].items()
             if any(argv[:1] == [command] for argv in lifeguard_commands(job))]
    assert len(names) == 1, f"expected one job running `lifeguard {command}`, found {names}"
    return str(names[0])


def needs(job: dict[str, Any]) -> list[str]:
    value = job.get("needs", [])
    return [value] if isinstance(value, str) else list(value)


def test_there_are_the_workflows() -> None:
    # One stack (repository settings), or several in GitHub environments: each a deploy and a preview.
    assert [path.name for path in FILES] == [
        "deploy-environments.yml", "deploy-stage.yml", "deploy.yml", "preview-environments.yml", "preview.yml"]
    assert {path.name for path in FILES} == set(CREDENTIALS) | {STAGES_WORKFLOW}


@pytest.mark.parametrize("schema", ["vendor.github-workflows", "custom.github-workflows-require-timeout"])
def test_workflows_match_githubs_schema(schema: str) -> None:
    # SchemaStore's workflow schema (vendored by check-jsonschema), and a timeout on every job.
    done = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, *map(str, FILES)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_lifeguard_command_parses(path: Path) -> None:
    parser = build_parser()
    found = 0
    for job in load(path)["jobs"].values():
        for argv in lifeguard_commands(job):
            found += 1
            try:
                args = parser.parse_args(argv)
            except SystemExit as exc:
                pytest.fail(f"{path.name}: `lifeguard {shlex.join(argv)}` does not parse (exit {exc.code})")
            assert callable(args.func)
    if path.name == "deploy.yml":
        # verify-rollout, migrate, and smoke twice: the sample functions', or the user's function.
        assert found == 4


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_credentials_come_from_oidc_never_from_keys(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert not re.search(r"aws[-_]access[-_]key[-_]id|aws[-_]secret[-_]access[-_]key", text, re.IGNORECASE)
    document = load(path)
    # Nothing granted workflow-wide: each job names what it uses (zizmor's excessive-permissions).
    assert document["permissions"] == {}
    for name, job in document["jobs"].items():
        permissions = job.get("permissions", {})
        for step in steps(job):
            if action(step) == AWS_CREDENTIALS:
                assert step["with"]["role-to-assume"].startswith("${{ vars.AWS_")
                assert permissions.get("id-token") == "write", f"{name} needs id-token: write for OIDC"
                assert "aws-access-key-id" not in step["with"]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_actions_and_tools_are_pinned(path: Path) -> None:
    document = load(path)
    env = document.get("env", {})
    uses_lines = [line for line in path.read_text(encoding="utf-8").splitlines() if re.match(r"\s*(- )?uses:", line)]
    # Every `uses` is on a line of its own, so no step (or job calling a workflow) escapes the check below.
    assert len(uses_lines) == sum("uses" in step for job in document["jobs"].values() for step in steps(job)) + sum(
        "uses" in job for job in document["jobs"].values())
    for line in uses_lines:
        if own := OWN_WORKFLOW.match(line):
            # This repository's own reusable workflow, at the caller's commit: nothing to pin.
            assert (WORKFLOWS / own.group(1)).is_file(), line
            continue
        assert PINNED_USES.match(line), f"{path.name}: pin to a full commit SHA with `# vX.Y.Z`: {line.strip()}"
    for job in document["jobs"].values():
        for step in steps(job):
            if action(step) == "actions/setup-python":
                version = resolve(step["with"]["python-version"], env)
                # A string: unquoted 3.10 would be the number 3.1.
                assert isinstance(version, str) and re.fullmatch(r"3\.1[1-9]", version), version
            if action(step) == "pulumi/actions":
                version = resolve(step["with"]["pulumi-version"], env)
                assert isinstance(version, str) and re.fullmatch(r"3\.\d+\.\d+", version), version


def test_each_action_has_one_pin_across_the_workflows() -> None:
    # Two SHAs (or two version comments) for one action mean a half-done update.
    pins: dict[str, set[str]] = {}
    for path in FILES:
        for line in path.read_text(encoding="utf-8").splitlines():
            match = PINNED_USES.match(line)
            if match:
                pins.setdefault(match.group(1), set()).add(line.split("@", 1)[1])
    assert pins and all(len(found) == 1 for found in pins.values()), pins


@pytest.mark.parametrize("path", STEP_FILES, ids=lambda p: p.name)
def test_settings_live_in_the_repository_or_environment_settings(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    used_vars = set(re.findall(r"\bvars\.(\w+)", text))
    used_secrets = set(re.findall(r"\bsecrets\.(\w+)", text))
    role, token = CREDENTIALS[path.name]
    (other_role, other_token), = {pair for pair in CREDENTIALS.values() if pair != (role, token)}
    assert used_vars <= SETTINGS_VARS and {"PULUMI_STACK", "AWS_REGION", role} <= used_vars
    assert used_secrets <= SETTINGS_SECRETS and token in used_secrets
    assert other_role not in used_vars and other_token not in used_secrets, f"{path.name} names the other credentials"
    document = load(path)
    if path.name in ENVIRONMENT_WORKFLOWS:
        # Workflow-level `vars` would be the repository's: the stack is read in the job that names
        # its environment, where the environment's own variables apply.
        assert "PULUMI_STACK" not in document["env"]
        (job,) = document["jobs"].values()
        assert job["environment"]
        env = job["env"]
    else:
        env = document["env"]
    assert env["PULUMI_STACK"] == "${{ vars.PULUMI_STACK }}" and env["AWS_REGION"] == "${{ vars.AWS_REGION }}"
    # The token reaches only the steps that run Pulumi, not every step (pip installs run code too).
    assert "PULUMI_ACCESS_TOKEN" not in env


@pytest.mark.parametrize("path", STEP_FILES, ids=lambda p: p.name)
def test_pulumi_steps_are_valid(path: Path) -> None:
    document = load(path)
    for job in document["jobs"].values():
        for step in steps(job):
            if action(step) != "pulumi/actions":
                continue
            inputs = step["with"]
            if "command" not in inputs:
                # Install-only mode: the CLI for `lifeguard ... --stack`.
                assert set(inputs) == {"pulumi-version"}
                continue
            assert inputs["command"] in PULUMI_COMMANDS
            assert inputs["stack-name"] == "${{ env.PULUMI_STACK }}"
            token = CREDENTIALS[path.name][1]
            assert step["env"]["PULUMI_ACCESS_TOKEN"] == f"${{{{ secrets.{token} }}}}"
            if inputs.get("comment-on-pr"):
                assert inputs["command"] == "preview"
                assert job["permissions"]["pull-requests"] == "write"


def test_preview_runs_on_pull_requests_with_a_comment() -> None:
    document = workflow("preview.yml")
    assert set(document["on"]) == {"pull_request"}
    (job,) = document["jobs"].values()
    (pulumi,) = [step for step in steps(job) if action(step) == "pulumi/actions"]
    assert pulumi["with"]["command"] == "preview"
    assert pulumi["with"]["comment-on-pr"] is True
    assert pulumi["with"]["github-token"] == "${{ secrets.GITHUB_TOKEN }}"


@pytest.mark.parametrize("path", STEP_FILES, ids=lambda p: p.name)
def test_each_workflow_assumes_only_its_own_role(path: Path) -> None:
    role, _ = CREDENTIALS[path.name]
    for job in load(path)["jobs"].values():
        for step in steps(job):
            if action(step) == AWS_CREDENTIALS:
                # Exactly this variable: an expression such as `vars.A || vars.B` would fall back.
                assert step["with"]["role-to-assume"] == f"${{{{ vars.{role} }}}}"


def settings_check(path: Path) -> dict[str, Any]:
    # The first step of the workflow's first job, before anything runs the pull request's code.
    first = steps(next(iter(load(path)["jobs"].values())))[0]
    where = "environment's" if path.name in ENVIRONMENT_WORKFLOWS else "repository's"
    assert first["name"] == f"Check the {where} settings"
    return first


def run_settings_check(
    path: Path, settings: dict[str, str], inputs: dict[str, str] | None = None, output: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """The check step's script under bash as GitHub runs it (-eo pipefail), with its env resolved from
    ``settings`` (the repository's, or the environment's) and the workflow's ``inputs``."""
    step = settings_check(path)
    document = load(path)
    (job,) = list(document["jobs"].values())[:1]
    env = {"PATH": "/usr/bin:/bin", "GITHUB_OUTPUT": str(output or "/dev/null")}
    for name, value in {**document.get("env", {}), **job.get("env", {}), **step["env"]}.items():
        expression = EXPRESSION.fullmatch(str(value))
        if expression is None:
            env[name] = str(value)
            continue
        source = expression.group(1)
        if match := re.fullmatch(r"(vars|secrets)\.(\w+)", source):
            env[name] = settings.get(match.group(2), "")
        elif match := re.fullmatch(r"secrets\.(\w+) != ''", source):
            env[name] = "true" if settings.get(match.group(1)) else "false"
        elif match := re.fullmatch(r"inputs\.([\w-]+)", source):
            env[name] = (inputs or {}).get(match.group(1), "")
        else:
            pytest.fail(f"{path.name}: the check step uses an expression this test cannot evaluate: {source}")
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
                          env=env, capture_output=True, text=True, timeout=30, check=False)


DEPLOY_SETTINGS = {"PULUMI_STACK": "acme/lifeguard/prod", "AWS_REGION": "eu-west-1",
                   "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/lifeguard-deploy", "PULUMI_ACCESS_TOKEN": "pul-x"}
PREVIEW_SETTINGS = {"AWS_PREVIEW_ROLE_ARN": "arn:aws:iam::123456789012:role/lifeguard-preview",
                    "PULUMI_PREVIEW_ACCESS_TOKEN": "pul-read"}


@pytest.mark.parametrize("path", STEP_FILES, ids=lambda p: p.name)
def test_the_settings_check_passes_when_everything_is_set(path: Path) -> None:
    done = run_settings_check(path, {**DEPLOY_SETTINGS, **PREVIEW_SETTINGS}, {"environment": "staging"})
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("workflow_name", ["preview.yml", "preview-environments.yml"])
@pytest.mark.parametrize("missing", ["AWS_PREVIEW_ROLE_ARN", "PULUMI_PREVIEW_ACCESS_TOKEN"])
def test_the_preview_fails_without_its_own_credentials_even_when_the_deploy_ones_are_set(
    missing: str, workflow_name: str
) -> None:
    settings = {**DEPLOY_SETTINGS, **PREVIEW_SETTINGS}
    del settings[missing]
    done = run_settings_check(WORKFLOWS / workflow_name, settings)
    assert done.returncode != 0
    (error,) = [line for line in done.stdout.splitlines() if line.startswith("::error::")]
    assert missing in error and "docs/pipeline.md" in error and "never use" in error


def test_deploy_then_migrate_then_smoke() -> None:
    document = workflow("deploy.yml")
    assert document["on"]["push"]["branches"] == ["main"]
    jobs = document["jobs"]
    for name, job in jobs.items():
        assert set(needs(job)) <= set(jobs) - {name}, f"{name} needs a job that does not exist"
    (deploy,) = [name for name, job in jobs.items()
                 if any(step.get("with", {}).get("command") == "up" for step in steps(job))]
    migrate = job_running(document, "migrate")
    smoke = job_running(document, "smoke")
    assert needs(jobs[migrate]) == [deploy]
    assert needs(jobs[smoke]) == [migrate]
    # Two runs never migrate at once, and a running migration is never cancelled.
    concurrency = jobs[migrate]["concurrency"]
    assert concurrency["group"] and "${{ vars.PULUMI_STACK }}" in concurrency["group"]
    assert concurrency["cancel-in-progress"] is False
    assert document["concurrency"]["cancel-in-progress"] is False
    # The task is tagged with the run, and its timeout is below the job's.
    (argv,) = [a for a in lifeguard_commands(jobs[migrate]) if a[0] == "migrate"]
    args = build_parser().parse_args(argv)
    assert args.stack == "$PULUMI_STACK" and args.started_by.startswith("github-")
    assert args.timeout < jobs[migrate]["timeout-minutes"] * 60


def install_uses(job: dict[str, Any]) -> list[str]:
    """The install each ``scripts/bootstrap.sh`` line of the job asks for."""
    scripts = "\n".join(str(step.get("run", "")) for step in steps(job))
    assert "pip install" not in scripts, "install from the lock: scripts/bootstrap.sh"
    return re.findall(r"^\s*scripts/bootstrap\.sh (\w+)\s*$", scripts, flags=re.MULTILINE)


def test_the_pooler_rollout_is_verified_right_after_pulumi_up() -> None:
    # A rolled-back pooler update leaves `pulumi up` green; the deploy job must fail instead.
    jobs = workflow("deploy.yml")["jobs"]
    deploy = job_running(workflow("deploy.yml"), "verify-rollout")
    job_steps = steps(jobs[deploy])
    up = next(i for i, step in enumerate(job_steps) if step.get("with", {}).get("command") == "up")
    verify = next(i for i, step in enumerate(job_steps) if "lifeguard verify-rollout" in str(step.get("run", "")))
    assert verify == up + 1
    # It reads the outputs with the Pulumi CLI, so it needs the token; and it ends before the job does.
    assert job_steps[verify]["env"]["PULUMI_ACCESS_TOKEN"] == "${{ secrets.PULUMI_ACCESS_TOKEN }}"
    (argv,) = [a for a in lifeguard_commands(jobs[deploy]) if a[0] == "verify-rollout"]
    args = build_parser().parse_args(argv)
    assert args.stack == "$PULUMI_STACK"
    assert args.timeout < jobs[deploy]["timeout-minutes"] * 60
    assert jobs["migrate"]["needs"] == deploy


def step_with_id(job: dict[str, Any], step_id: str) -> tuple[int, dict[str, Any]]:
    (found,) = [(index, step) for index, step in enumerate(steps(job)) if step.get("id") == step_id]
    return found


def read_architecture(tmp_path: Path, pulumi_script: str) -> subprocess.CompletedProcess[str]:
    """The deploy job's "Read the stack's container architecture" step under bash, as GitHub runs it.

    A stand-in ``pulumi`` prints what the real ``pulumi config --json`` would; ``python`` is this one.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "pulumi").write_text(f"#!/bin/sh\n{pulumi_script}\n", encoding="utf-8")
    (bin_dir / "pulumi").chmod(0o755)
    (bin_dir / "python").symlink_to(sys.executable)
    _, step = step_with_id(workflow("deploy.yml")["jobs"]["deploy"], "stack")
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "PULUMI_STACK": "acme/lifeguard/prod", "RUNNER_ARCH": "X64",
           "GITHUB_OUTPUT": str(tmp_path / "output"), "RUNNER_TEMP": str(tmp_path)}
    (tmp_path / "output").write_text("", encoding="utf-8")
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
                          env=env, capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"aws:region": {"value": "eu-west-1", "secret": False},
          "lifeguard:containerArchitecture": {"value": "arm64", "secret": False}}, "arm64"),
        ({"lifeguard:containerArchitecture": {"value": "x86_64", "secret": False}}, "x86_64"),
        ({"aws:region": {"value": "eu-west-1", "secret": False}}, "x86_64"),
    ],
    ids=["arm64", "x86_64", "unset"],
)
def test_the_deploy_job_reads_the_stacks_container_architecture(
    config: dict[str, Any], expected: str, tmp_path: Path,
) -> None:
    (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    # The stand-in answers only the exact command line the step must run.
    expected_argv = "config --json --stack acme/lifeguard/prod"
    done = read_architecture(tmp_path, f'[ "$*" = "{expected_argv}" ] && cat {tmp_path}/config.json')
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "output").read_text(encoding="utf-8") == f"container-architecture={expected}\n"


def test_the_unset_architecture_is_the_programs_default() -> None:
    from lifeguard.aws.keys import KEYS_BY_NAME, ChoiceKey

    spec = KEYS_BY_NAME["containerArchitecture"]
    assert isinstance(spec, ChoiceKey)
    _, step = step_with_id(workflow("deploy.yml")["jobs"]["deploy"], "stack")
    assert f'else "{spec.default}"' in step["run"]


def test_a_config_the_step_cannot_read_fails_the_job(tmp_path: Path) -> None:
    # Pulumi cannot read the stack (not logged in, no such stack): no guessing an architecture.
    done = read_architecture(tmp_path, 'echo "error: no stack named acme/lifeguard/prod found" >&2; exit 255')
    assert done.returncode != 0
    assert (tmp_path / "output").read_text(encoding="utf-8") == ""


def test_an_arm64_stack_gets_qemu_before_pulumi_up() -> None:
    job = workflow("deploy.yml")["jobs"]["deploy"]
    read, _ = step_with_id(job, "stack")
    (qemu,) = [index for index, step in enumerate(steps(job)) if action(step) == "docker/setup-qemu-action"]
    up = next(i for i, step in enumerate(steps(job)) if step.get("with", {}).get("command") == "up")
    assert read < qemu < up
    step = steps(job)[qemu]
    assert step["if"] == "steps.stack.outputs.container-architecture == 'arm64' && runner.arch != 'ARM64'"
    assert step["with"] == {"platforms": "arm64"}
    # The config is read with the Pulumi CLI: installed before, and given the token.
    assert any(action(s) == "pulumi/actions" and "command" not in s["with"] for s in steps(job)[:read])
    assert steps(job)[read]["env"]["PULUMI_ACCESS_TOKEN"] == "${{ secrets.PULUMI_ACCESS_TOKEN }}"


def test_the_program_venv_is_where_pulumi_yaml_says() -> None:
    # Pulumi runs the program with the virtualenv named in Pulumi.yaml; the workflows create it with
    # scripts/bootstrap.sh, which installs uv.lock into uv's project environment, .venv.
    project = yaml.safe_load((WORKFLOWS.parents[1] / "Pulumi.yaml").read_text(encoding="utf-8"))
    assert project["runtime"]["options"]["virtualenv"] == ".venv"
    for path in FILES:
        for job in load(path)["jobs"].values():
            if any(action(step) == "pulumi/actions" and "command" in step["with"] for step in steps(job)):
                assert install_uses(job) == ["infra"], f"{path.name}: the Pulumi program needs the infra install"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_jobs_running_lifeguard_install_the_pipeline_set(path: Path) -> None:
    # The pipeline commands need the base install only; a job that also runs the Pulumi program
    # (deploy's verify-rollout right after `pulumi up`) has it inside the infra install.
    for job in load(path)["jobs"].values():
        if any(True for _ in lifeguard_commands(job)):
            runs_pulumi = any(action(step) == "pulumi/actions" and "command" in step["with"] for step in steps(job))
            assert install_uses(job) == ["infra" if runs_pulumi else "pipeline"]


def test_every_setting_the_workflows_use_is_documented() -> None:
    # docs/pipeline.md's settings table is where users learn what to set.
    table = (WORKFLOWS.parents[1] / "docs" / "pipeline.md").read_text(encoding="utf-8")
    used: set[str] = set()
    for path in FILES:
        text = path.read_text(encoding="utf-8")
        used |= set(re.findall(r"\bvars\.(\w+)", text)) | set(re.findall(r"\bsecrets\.(\w+)", text))
    for name in used - {"GITHUB_TOKEN"}:
        assert re.search(rf"^\| (variable|secret) \| `{name}` \|", table, re.MULTILINE), f"{name} is not in the table"


def test_the_documented_pins_are_the_workflows_pins() -> None:
    # docs/pipeline.md's table of pins is what users check an update against.
    table = (WORKFLOWS.parents[1] / "docs" / "pipeline.md").read_text(encoding="utf-8")
    documented = {match.group(1): (match.group(3), match.group(2))
                  for match in re.finditer(r"^\| `([\w.-]+/[\w.-]+)` \| (v[\d.]+) \| `([0-9a-f]{40})`", table, re.M)}
    used = {}
    for path in FILES:
        for line in path.read_text(encoding="utf-8").splitlines():
            if match := PINNED_USES.match(line):
                sha, version = line.split("@", 1)[1].split(" # ")
                used[match.group(1)] = (sha, version)
    assert documented == used


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_the_smoke_step_charges_only_the_smoke_org(path: Path) -> None:
    # On a production stack (no demo data) any other org is missing or a customer's: the workflows'
    # smoke command line must come out as the CLI's default, the org migration 0004 creates.
    from lifeguard.deploy.smoke import SMOKE_ORG_ID

    smoke_org = (WORKFLOWS.parents[1] / "migrator" / "migrations" / "0004_smoke_org.sql").read_text(encoding="utf-8")
    assert f"VALUES ({SMOKE_ORG_ID}, 'lifeguard-smoke'," in smoke_org
    parser = build_parser()
    # No --org-id: the command then charges SMOKE_ORG_ID (test_smoke.py checks the event it sends).
    for job in load(path)["jobs"].values():
        for argv in lifeguard_commands(job):
            if argv[:1] == ["smoke"]:
                assert parser.parse_args(argv).org_id is None, f"{path.name}: `lifeguard {shlex.join(argv)}`"


# -- #27.10: several stacks, in order, through GitHub environments -------------------------------

STAGE_WORKFLOW = "$/.github/workflows/deploy-stage.yml"


def stages() -> list[tuple[str, dict[str, Any]]]:
    """The stages of deploy-environments.yml in the order their ``needs`` impose: (environment, job)."""
    jobs = workflow(STAGES_WORKFLOW)["jobs"]
    ordered: list[str] = []
    while len(ordered) < len(jobs):
        ready = [name for name, job in jobs.items() if name not in ordered and set(needs(job)) <= set(ordered)]
        assert len(ready) == 1, f"the stages must form one chain, found {ready} ready after {ordered}"
        ordered += ready
    return [(jobs[name]["with"]["environment"], jobs[name]) for name in ordered]


def test_the_stages_deploy_in_order_each_after_the_one_before_passed() -> None:
    document = workflow(STAGES_WORKFLOW)
    assert document["on"]["push"]["branches"] == ["main"] and document["permissions"] == {}
    found = stages()
    assert [environment for environment, _ in found] == ["dev", "staging", "production"]
    called = workflow("deploy-stage.yml")
    (stage_job,) = called["jobs"].values()
    names = list(document["jobs"])
    for index, (environment, job) in enumerate(found):
        assert job["uses"] == STAGE_WORKFLOW
        # A called workflow gets at most its caller's permissions: exactly what the stage job uses.
        assert job["permissions"] == stage_job["permissions"] == {"contents": "read", "id-token": "write"}
        earlier = names[:index]
        # Each stage waits for every earlier one, and passes on the stacks they deployed.
        assert set(needs(job)) >= set(earlier[-1:])
        deployed = job["with"].get("deployed-stacks", "")
        assert EXPRESSION.findall(deployed) == [f"needs.{name}.outputs.stack" for name in earlier], environment
        assert EXPRESSION.sub("", deployed).strip() == "", environment
        assert set(needs(job)) == set(earlier), f"{environment} reads the outputs of {earlier}: it must need them"
    assert set(called["on"]["workflow_call"]["inputs"]) == {"environment", "deployed-stacks"}
    assert called["on"]["workflow_call"]["outputs"]["stack"]["value"] == "${{ jobs.stage.outputs.stack }}"


def test_a_stage_is_one_job_from_pulumi_up_to_the_smoke_test() -> None:
    # One job: one approval for an environment with required reviewers, one concurrency group that
    # holds the stack from `pulumi up` to the smoke test, and migrate and smoke gate the next stage.
    document = workflow("deploy-stage.yml")
    (job,) = document["jobs"].values()
    assert job["environment"] == "${{ inputs.environment }}"
    assert job["concurrency"] == {"group": "deploy-stage-${{ inputs.environment }}", "cancel-in-progress": False}
    job_steps = steps(job)

    def index(predicate: Any) -> int:
        (found,) = [i for i, step in enumerate(job_steps) if predicate(step)]
        return found

    up = index(lambda s: s.get("with", {}).get("command") == "up")
    verify, migrate, smoke = (index(lambda s, c=c: f"lifeguard {c}" in str(s.get("run", "")))
                              for c in ("verify-rollout", "migrate", "smoke"))
    assert up < verify < migrate < smoke == len(job_steps) - 1
    # A fresh session before the migration: the first one lasts an hour, which `up` may have used.
    credentials = [i for i, step in enumerate(job_steps) if action(step) == AWS_CREDENTIALS]
    assert len(credentials) == 2 and credentials[0] < up and verify < credentials[1] < migrate
    # The same commands as deploy.yml runs for one stack, and within the job's time.
    parser = build_parser()
    single = [argv for stage in workflow("deploy.yml")["jobs"].values() for argv in lifeguard_commands(stage)]
    assert list(lifeguard_commands(job)) == single
    seconds = sum(getattr(parser.parse_args(argv), "timeout", 0) or 0 for argv in single)
    assert seconds + 60 * 60 < job["timeout-minutes"] * 60  # `pulumi up` has deploy.yml's 60 minutes too


def test_a_stage_outputs_its_stack_and_refuses_one_an_earlier_stage_deployed(tmp_path: Path) -> None:
    path = WORKFLOWS / "deploy-stage.yml"
    settings = {**DEPLOY_SETTINGS, "PULUMI_STACK": "acme/lifeguard/staging"}
    output = tmp_path / "output"
    done = run_settings_check(path, settings, {"environment": "staging", "deployed-stacks": "acme/lifeguard/dev"},
                              output)
    assert done.returncode == 0, done.stdout + done.stderr
    assert output.read_text(encoding="utf-8") == "stack=acme/lifeguard/staging\n"
    (job,) = workflow("deploy-stage.yml")["jobs"].values()
    assert job["outputs"]["stack"] == "${{ steps.settings.outputs.stack }}"
    assert steps(job)[0]["id"] == "settings"
    # An environment without its own PULUMI_STACK falls back to the repository's: the same stack again.
    output.write_text("", encoding="utf-8")
    again = run_settings_check(path, {**DEPLOY_SETTINGS, "PULUMI_STACK": "acme/lifeguard/dev"},
                               {"environment": "staging", "deployed-stacks": "acme/lifeguard/dev"}, output)
    assert again.returncode != 0
    (error,) = [line for line in again.stdout.splitlines() if line.startswith("::error::")]
    assert "environment staging" in error and "acme/lifeguard/dev" in error
    assert output.read_text(encoding="utf-8") == ""


@pytest.mark.parametrize("missing", ["PULUMI_STACK", "AWS_REGION", "AWS_ROLE_ARN", "PULUMI_ACCESS_TOKEN"])
def test_a_stage_names_the_environment_setting_it_lacks(missing: str) -> None:
    settings = dict(DEPLOY_SETTINGS)
    del settings[missing]
    done = run_settings_check(WORKFLOWS / "deploy-stage.yml", settings, {"environment": "production"})
    assert done.returncode != 0
    (error,) = [line for line in done.stdout.splitlines() if line.startswith("::error::")]
    assert missing in error and "environment production" in error


def test_every_stage_is_previewed_in_its_own_preview_environment() -> None:
    document = workflow("preview-environments.yml")
    assert set(document["on"]) == {"pull_request"}
    (job,) = document["jobs"].values()
    assert job["strategy"]["matrix"]["stage"] == [environment for environment, _ in stages()]
    # Never the deploy environment: its role and token can change the stack.
    assert job["environment"] == "${{ matrix.stage }}-preview"
    assert job["concurrency"] == {
        "group": "preview-${{ github.event.pull_request.number }}-${{ matrix.stage }}", "cancel-in-progress": True}
    (pulumi,) = [step for step in steps(job) if action(step) == "pulumi/actions"]
    assert pulumi["with"]["command"] == "preview" and pulumi["with"]["comment-on-pr"] is True
    assert "github.event.pull_request.head.repo.full_name == github.repository" in job["if"]


def test_one_variable_switches_between_one_stack_and_several() -> None:
    # Never both pipelines on one push or pull request: each deploys or previews only in its mode.
    on, off = "vars.DEPLOY_WITH_ENVIRONMENTS == 'true'", "vars.DEPLOY_WITH_ENVIRONMENTS != 'true'"
    (first_stage, *later) = [job for _, job in stages()]
    assert first_stage["if"] == on and all("if" not in job and needs(job) for job in later)
    (preview_all,) = workflow("preview-environments.yml")["jobs"].values()
    assert preview_all["if"].startswith(on + " && ")
    deploy = workflow("deploy.yml")["jobs"]
    assert deploy["deploy"]["if"] == off and all(needs(job) for name, job in deploy.items() if name != "deploy")
    (preview_one,) = workflow("preview.yml")["jobs"].values()
    assert preview_one["if"].startswith(off + " && ")


# -- #24: the smoke test of a stack without the sample functions -----------------------------------

DEPLOY_FILES = [WORKFLOWS / "deploy.yml", WORKFLOWS / "deploy-stage.yml"]


def run_smoke_step(path: Path, settings: dict[str, str], tmp_path: Path) -> list[str]:
    """The smoke step's script under bash as GitHub runs it, its env resolved from ``settings``, with a
    ``lifeguard`` on PATH that records its argv: what the real command would be given."""
    (step,) = [step for job in load(path)["jobs"].values() for step in steps(job)
               if "lifeguard smoke" in str(step.get("run", ""))]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    record = tmp_path / "argv"
    fake = bin_dir / "lifeguard"
    fake.write_text('#!/bin/sh\nprintf \'%s\\0\' "$@" > "$RECORD"\n', encoding="utf-8")
    fake.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "RECORD": str(record), "PULUMI_STACK": settings["PULUMI_STACK"]}
    for name, value in step["env"].items():
        source = EXPRESSION.fullmatch(str(value))
        assert source, f"{path.name}: the smoke step's {name} must be one expression"
        match = re.fullmatch(r"(vars|secrets)\.(\w+)", source.group(1))
        assert match, f"{path.name}: the smoke step uses an expression this test cannot evaluate: {value}"
        env[name] = settings.get(match.group(2), "")
    done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return record.read_text(encoding="utf-8").split("\0")[:-1]


@pytest.mark.parametrize("path", DEPLOY_FILES, ids=lambda p: p.name)
def test_the_smoke_step_invokes_the_users_function_when_the_variable_is_set(path: Path, tmp_path: Path) -> None:
    parser = build_parser()
    assert run_smoke_step(path, DEPLOY_SETTINGS, tmp_path) == ["smoke", "--stack", "acme/lifeguard/prod"]
    payload = '{"rawPath": "/health"}'
    argv = run_smoke_step(path, {**DEPLOY_SETTINGS, "LIFEGUARD_SMOKE_FUNCTION": "acme-api-health",
                                 "LIFEGUARD_SMOKE_PAYLOAD": payload}, tmp_path)
    assert argv == ["smoke", "--function", "acme-api-health", "--payload", payload]
    assert parser.parse_args(argv).payload == b'{"rawPath": "/health"}'
    # Values are data, never shell: they reach lifeguard verbatim and run nothing.
    hostile_payload = '{"a": "$(touch pwned)"}`touch pwned`'
    argv = run_smoke_step(path, {**DEPLOY_SETTINGS, "LIFEGUARD_SMOKE_FUNCTION": "f; touch pwned",
                                 "LIFEGUARD_SMOKE_PAYLOAD": hostile_payload}, tmp_path)
    assert argv == ["smoke", "--function", "f; touch pwned", "--payload", hostile_payload]
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("path", DEPLOY_FILES, ids=lambda p: p.name)
@pytest.mark.parametrize(("given", "missing"), [
    ({"LIFEGUARD_SMOKE_FUNCTION": "acme-api-health"}, "LIFEGUARD_SMOKE_PAYLOAD"),
    ({"LIFEGUARD_SMOKE_PAYLOAD": "{}"}, "LIFEGUARD_SMOKE_FUNCTION"),
])
def test_the_settings_check_wants_the_smoke_function_and_its_payload_together(
    path: Path, given: dict[str, str], missing: str
) -> None:
    done = run_settings_check(path, {**DEPLOY_SETTINGS, **given}, {"environment": "staging"})
    assert done.returncode != 0
    (error,) = [line for line in done.stdout.splitlines() if line.startswith("::error::")]
    assert f"{missing} too" in error
    both = {"LIFEGUARD_SMOKE_FUNCTION": "acme-api-health", "LIFEGUARD_SMOKE_PAYLOAD": "{}"}
    assert run_settings_check(path, {**DEPLOY_SETTINGS, **both}, {"environment": "staging"}).returncode == 0
