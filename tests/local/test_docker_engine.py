"""The private Docker engine's clean-up of a leftover ``dockerd``: only a dockerd is ever signalled."""

from __future__ import annotations

import subprocess
from pathlib import Path

from lifeguard.stack.docker_engine import DockerEngine


def test_a_stale_pid_file_naming_another_process_does_not_get_it_killed(
    tmp_path: Path, bystander: subprocess.Popen[bytes]
) -> None:
    # After a reboot or a killed run, dockerd.pid can name a pid the system has since given to another process.
    engine = DockerEngine(tmp_path)
    engine.pid_file.write_text(f"{bystander.pid}\n")
    engine.stop()
    assert bystander.poll() is None, "a process that is not dockerd was signalled"
    assert not engine.pid_file.exists()
