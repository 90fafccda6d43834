"""zizmor, a GitHub Actions security linter, finds nothing in the workflows or Dependabot's config.

It runs offline (its online audits need a GitHub token and the network), with the repository's
own configuration, so the only way past it is a fix or an in-file suppression
(``# zizmor: ignore[audit]``) with its reason next to it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

GITHUB_DIR = Path(__file__).resolve().parents[2] / ".github"
TARGETS = [GITHUB_DIR / "workflows", GITHUB_DIR / "dependabot.yml"]
# The habits issue #17 removed: a workflow-wide id-token grant, a mutable tag, a persisted token.
UNSAFE_WORKFLOW = """\
name: unsafe
on: push
permissions:
  contents: read
  id-token: write
jobs:
  build:
    runs-on: ubuntu-24.04
    steps:
      - uses: actions/checkout@v4
  test:
    runs-on: ubuntu-24.04
    steps:
      - run: "true"
"""


def zizmor(*arguments: str) -> subprocess.CompletedProcess[str]:
    """Run zizmor offline; exit 0 means no unsuppressed finding, 10-14 findings (by top severity)."""
    # The dev extras install it beside this interpreter; PATH is the fallback for other set-ups.
    beside = Path(sys.executable).with_name("zizmor")
    executable = str(beside) if beside.exists() else shutil.which("zizmor")
    assert executable, "zizmor is not installed: run scripts/bootstrap.sh --dev (it is in the dev extras)"
    done = subprocess.run(
        [executable, "--offline", "--no-progress", "--color=never", *arguments],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0 or 10 <= done.returncode <= 14, f"zizmor itself failed:\n{done.stderr}"
    return done


def test_zizmor_finds_nothing() -> None:
    done = zizmor(*map(str, TARGETS))
    assert done.returncode == 0, f"fix each finding, or suppress it in place with its reason:\n{done.stdout}"


def test_zizmor_catches_what_the_workflows_avoid(tmp_path: Path) -> None:
    # The check above can fail: the same zizmor reports each removed habit when it is put back.
    workflow = tmp_path / "unsafe.yml"
    workflow.write_text(UNSAFE_WORKFLOW, encoding="utf-8")
    done = zizmor("--format=json", str(workflow))
    assert done.returncode >= 10
    found = {finding["ident"] for finding in json.loads(done.stdout)}
    assert {"unpinned-uses", "artipacked", "excessive-permissions"} <= found, found


def test_dependabot_config_matches_its_schema() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.dependabot",
         str(GITHUB_DIR / "dependabot.yml")],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_dependabot_updates_the_actions() -> None:
    config = yaml.safe_load((GITHUB_DIR / "dependabot.yml").read_text(encoding="utf-8"))
    ecosystems = {(update["package-ecosystem"], update["directory"]) for update in config["updates"]}
    assert ("github-actions", "/") in ecosystems
