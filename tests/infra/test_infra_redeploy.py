"""Issue #12: what makes the second `pulumi up` (from CI, another checkout, a revert) work too."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from infra.components.image import build_path, context_tag
from tests.infra.infra_harness import REPO_ROOT, ProgramRun

# -- #12.1: images ------------------------------------------------------------------------------


def test_image_tags_are_mutable_and_name_the_whole_context_digest(example_run: ProgramRun) -> None:
    # ECR refuses to overwrite an immutable tag even with the same digest, and pulumi-docker pushes
    # again whenever its view of `build` changes: immutable tags break every later `up`.
    repositories = example_run.of_type("aws:ecr/repository:Repository")
    assert {r.input("imageTagMutability") for r in repositories} == {"MUTABLE"}
    for image in example_run.of_type("docker:index/image:Image"):
        tag = image.input("imageName").rsplit(":", 1)[1]
        assert re.fullmatch(r"x86_64-[0-9a-f]{64}", tag), tag
        folder = Path(image.input("build")["context"]).name
        assert tag == context_tag(REPO_ROOT / folder, "x86_64")


def test_build_paths_are_relative_to_the_programs_working_directory() -> None:
    # Pulumi runs the program in infra/ (main: infra/ in Pulumi.yaml).
    assert build_path(REPO_ROOT / "pgbouncer", REPO_ROOT / "infra") == "../pgbouncer"
    assert build_path(REPO_ROOT / "migrator" / "Dockerfile", REPO_ROOT / "infra") == "../migrator/Dockerfile"
    assert build_path(REPO_ROOT / "pgbouncer", REPO_ROOT) == "pgbouncer"


def test_the_tag_is_the_same_in_another_checkout_and_differs_for_another_build(tmp_path: Path) -> None:
    first, second = tmp_path / "laptop" / "migrator", tmp_path / "ci" / "checkout" / "migrator"
    for copy in (first, second):
        shutil.copytree(REPO_ROOT / "migrator", copy, ignore=shutil.ignore_patterns("__pycache__"))
    # Another umask: read and write bits differ, the executable bit does not.
    for path in second.rglob("*.py"):
        os.chmod(path, 0o600)
    assert context_tag(first, "x86_64") == context_tag(second, "x86_64")
    assert context_tag(first, "x86_64") != context_tag(first, "arm64")
    (second / "runner.py").write_text((second / "runner.py").read_text() + "\n# changed\n")
    assert context_tag(first, "x86_64") != context_tag(second, "x86_64")
