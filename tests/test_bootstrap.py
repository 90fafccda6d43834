"""scripts/bootstrap.sh on the machine's PostgreSQL configuration (issue 31): change only what it needs."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

BOOTSTRAP = Path(__file__).resolve().parents[1] / "scripts" / "bootstrap.sh"
PACKAGED = Path("/usr/share/postgresql-common/createcluster.conf")
INCLUDED = "/etc/postgresql-common/createcluster.d"


def _written_files() -> dict[str, str]:
    """Each file bootstrap.sh writes with ``echo LINE | as_root tee FILE``, with the line."""
    pattern = re.compile(r'echo "([^"]+)" \| as_root tee (\S+)')
    return {target: line for line, target in pattern.findall(BOOTSTRAP.read_text())}


def test_bootstrap_leaves_createcluster_conf_alone_and_uses_a_drop_in() -> None:
    written = _written_files()
    assert "/etc/postgresql-common/createcluster.conf" not in written  # the package's conffile, and the admin's
    drop_ins = [target for target in written if target.startswith(f"{INCLUDED}/") and target.endswith(".conf")]
    assert drop_ins == [f"{INCLUDED}/lifeguard.conf"]


@pytest.mark.skipif(shutil.which("pg_conftool") is None or not PACKAGED.exists(),
                    reason="postgresql-common is not installed")
def test_the_drop_in_turns_the_main_cluster_off_as_the_package_reads_it(tmp_path: Path) -> None:
    # What postgresql-common's maintainer script asks before creating a main cluster, on the packaged
    # createcluster.conf with its include_dir pointed at a copy of the drop-in folder.
    drop_in_dir = tmp_path / "createcluster.d"
    drop_in_dir.mkdir()
    for target, line in _written_files().items():
        if target.startswith(f"{INCLUDED}/"):
            (drop_in_dir / Path(target).name).write_text(line + "\n")
    conf = tmp_path / "createcluster.conf"
    packaged = PACKAGED.read_text()
    assert f"include_dir '{INCLUDED}'" in packaged
    conf.write_text(packaged.replace(f"include_dir '{INCLUDED}'", f"include_dir '{drop_in_dir}'"))
    shown = subprocess.run(["pg_conftool", str(conf), "show", "-bs", "create_main_cluster"],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert shown == "off"
