"""lifeguard.aws is usable from its wheel in a fresh virtualenv outside the repository (#24.1).

What it reads at run time ships as package data, nothing resolves a path against the repository, and
building an image's context writes under the user's project, never into site-packages or the checkout.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from tests.examples.installed import INSTALLED_PACKAGES, REPO_ROOT, Installed, snapshot, source_files

# The repository's own caches and virtualenvs are not the library's to write; anything else under it is.
REPO_SKIP = (".git", ".venv", ".tools")

PROBE = """
import json, sys
import lifeguard.aws
from lifeguard.aws import build_context
# Every public name, resolved as a program gets it; the modules that define them, from the export table.
resolved = [getattr(lifeguard.aws, name) for name in lifeguard.aws.__all__]
names = {name: entry.partition(":")[0] for name, entry in lifeguard.aws._EXPORTS.items()}
data = {name: str(build_context.package_dir(name)) for name in ("pgbouncer", "migrator", "lambdas")}
print(json.dumps({"names": names, "package_dirs": data, "sys_path": sys.path,
                  "files": {n: getattr(m, "__file__", None) for n, m in sys.modules.items()}}))
"""


def wheel_names(installed: Installed) -> set[str]:
    with zipfile.ZipFile(installed.wheel) as archive:
        return set(archive.namelist())


def test_the_wheel_ships_every_file_of_the_installed_packages(installed: Installed) -> None:
    # Package data is listed by pattern in pyproject.toml; a new Dockerfile, SQL file or template that the
    # patterns miss would be missing only from installs, never from this checkout.
    shipped = wheel_names(installed)
    missing = [name for name in source_files() if name.split("/")[0] in INSTALLED_PACKAGES
               and name not in shipped]
    assert not missing, f"in the checkout but not in the wheel (add them to package-data): {missing}"
    for expected in ("pgbouncer/Dockerfile", "pgbouncer/.dockerignore", "migrator/Dockerfile",
                     "migrator/.dockerignore", "lifeguard/aws/__init__.py"):
        assert expected in shipped
    assert any(name.startswith("migrator/migrations/") and name.endswith(".sql") for name in shipped)


def test_the_wheel_holds_no_sample_stack_and_no_tests(installed: Installed) -> None:
    top_levels = {name.split("/")[0] for name in wheel_names(installed)}
    [dist_info] = [name for name in top_levels if name.endswith(".dist-info")]
    assert top_levels == {*INSTALLED_PACKAGES, dist_info}


def test_lifeguard_aws_imports_from_site_packages_with_the_repository_off_the_path(
    installed: Installed, tmp_path: Path
) -> None:
    result = installed.run(["-c", PROBE], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout)
    site = installed.site_packages.resolve()
    assert probe["names"], "lifeguard.aws exports nothing"
    assert not [p for p in probe["sys_path"] if p and Path(p).resolve().is_relative_to(REPO_ROOT)]
    from_repo = {name: file for name, file in probe["files"].items()
                 if file and Path(file).resolve().is_relative_to(REPO_ROOT)}
    assert not from_repo, f"modules loaded from the checkout: {sorted(from_repo)}"
    for name in ("lifeguard.aws", "lifeguard.aws.build_context", *probe["names"].values()):
        assert Path(probe["files"][name]).resolve().is_relative_to(site), name
    for package, folder in probe["package_dirs"].items():
        assert Path(folder).is_relative_to(site), package
    assert (site / "pgbouncer" / "Dockerfile").is_file()
    assert (site / "migrator" / "Dockerfile").is_file()
    assert sorted(p.name for p in (site / "migrator" / "migrations").glob("*.sql")) == sorted(
        p.name for p in (REPO_ROOT / "migrator" / "migrations").glob("*.sql"))


STAGE = """
import json, sys
from pathlib import Path
from lifeguard.aws import build_context
staged = {}
for name in ("pgbouncer", "migrator"):
    context = build_context.build_context(build_context.package_dir(name), build_context.shared_packages())
    staged[name] = str(context.resolve())
print(json.dumps(staged))
"""


@pytest.mark.parametrize("build_dir_env", [False, True], ids=["project-build", "LIFEGUARD_BUILD_DIR"])
def test_image_contexts_are_staged_in_the_project_never_in_site_packages_or_the_repository(
    installed: Installed, tmp_path: Path, build_dir_env: bool
) -> None:
    project = tmp_path / "my-product"
    project.mkdir()
    (project / "Pulumi.yaml").write_text("name: my-product\nruntime: python\n")
    work = project / "deep" / "folder"  # Pulumi finds the project from a subfolder too
    work.mkdir(parents=True)
    chosen = tmp_path / "ci-cache"
    site_before = snapshot(installed.site_packages)
    repo_before = snapshot(REPO_ROOT, skip=REPO_SKIP)
    env = {"LIFEGUARD_BUILD_DIR": str(chosen)} if build_dir_env else {}
    result = installed.run(["-c", STAGE], cwd=work, env=env)
    assert result.returncode == 0, result.stderr
    staged = json.loads(result.stdout)
    root = chosen if build_dir_env else project / "build"
    for name, folder in staged.items():
        context = Path(folder)
        assert context.parent == (root / "image-contexts").resolve(), context
        assert (context / "Dockerfile").read_bytes() == (installed.site_packages / name / "Dockerfile").read_bytes()
    # migrator's image also gets the shared packages (its Dockerfile copies shared/).
    assert (Path(staged["migrator"]) / "shared" / "redaction" / "__init__.py").is_file()
    assert snapshot(installed.site_packages) == site_before
    assert snapshot(REPO_ROOT, skip=REPO_SKIP) == repo_before


def test_the_snapshot_sees_a_write(tmp_path: Path) -> None:
    # Control for the two checks above.
    (tmp_path / "a").write_text("1")
    before = snapshot(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b").write_text("2")
    assert snapshot(tmp_path) != before
