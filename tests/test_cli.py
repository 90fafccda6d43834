"""``lifeguard``: each command loads its own modules only, so the pipeline commands run from the base install."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from lifeguard import cli
from tests.lockfile import FIRST_PARTY, REPO_ROOT, STDLIB, closure, install_roots, load

# Runs the CLI as the base install would: every third-party module whose distribution the lock does
# not give that install cannot be imported. Prints the modules loaded, as JSON, on stderr's last line.
_BASE_ONLY = """
import json, sys
allowed, owners, argv = json.loads(sys.argv[1])

class BaseInstallOnly:
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in owners and not set(owners[top]) & set(allowed):
            raise ModuleNotFoundError(f"No module named {top!r} (not in the base install)", name=top)
        return None

sys.meta_path.insert(0, BaseInstallOnly())
from lifeguard.cli import main
try:
    code = main(argv)
except SystemExit as exc:
    code = exc.code
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
sys.exit(code)
"""


def run_from_the_base_install(*argv: str) -> tuple[int, str, str, set[str]]:
    lock = load()
    allowed = sorted(closure(lock, install_roots(lock)))
    owners = {
        module: sorted({canonicalize_name(d) for d in dists}) for module, dists in packages_distributions().items()
        if module not in STDLIB and module not in FIRST_PARTY
    }
    done = subprocess.run(
        [sys.executable, "-c", _BASE_ONLY, json.dumps([allowed, owners, list(argv)])],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    *stderr, modules = done.stderr.rstrip("\n").split("\n")
    return done.returncode, done.stdout, "\n".join(stderr), set(json.loads(modules))


@pytest.mark.parametrize("command", [name for name, command in cli.COMMANDS.items() if command.extra is None])
def test_pipeline_commands_start_from_the_base_install(command: str, tmp_path: Path) -> None:
    code, out, err, modules = run_from_the_base_install(command, "--help")
    assert code == 0, err
    assert out.startswith(f"usage: lifeguard {command} ") and "--stack" in out
    local_only = ("lifeguard.stack", "lifeguard.load", "lifeguard.bench", "pgbouncer", "psycopg")
    assert not {m for m in modules if m.startswith(local_only)}
    # Past the parser too: unusable outputs are refused with exit 2, before any AWS call.
    outputs = tmp_path / "outputs.json"
    outputs.write_text("{}")
    code, _, err, _ = run_from_the_base_install(command, "--outputs", str(outputs))
    assert code == 2, err
    assert f"lifeguard {command}: error:" in err


def test_a_local_command_without_its_extra_names_the_install() -> None:
    code, _, err, _ = run_from_the_base_install("demo", "--help")
    assert code == 2
    assert "`lifeguard demo` cannot start: No module named 'psycopg'" in err
    assert "scripts/bootstrap.sh local" in err


def test_the_command_list_needs_no_command_module() -> None:
    code, out, err, modules = run_from_the_base_install("--help")
    assert code == 0, err
    for name, command in cli.COMMANDS.items():
        assert f"{name} {command.help}" in " ".join(out.split())
    assert not {m for m in modules if m.startswith("lifeguard.cli.")}


@pytest.mark.parametrize("name", cli.COMMANDS)
def test_every_command_has_its_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main([name, "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: lifeguard {name} ")


_SLOW_COMMAND = """
import sys, time
from lifeguard import cli

def configure(parser):
    def run(args):
        try:
            print("ready", flush=True)
            time.sleep(60)
        finally:
            print("cleaned up", flush=True)
        return 0
    parser.set_defaults(func=run)

cli.COMMANDS["slow"] = cli.Command(lambda: configure, "sleeps until stopped", None)
sys.argv = ["lifeguard", "slow"]
sys.exit(cli.main())
"""


def test_sigterm_runs_the_commands_clean_up_as_ctrl_c_does() -> None:
    # `lifeguard demo` and `local up` stop what they started in finally blocks; a bare SIGTERM skipped them.
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_COMMAND], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    proc.terminate()
    out, err = proc.communicate(timeout=30)
    assert out == "cleaned up\n"
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "terminated" in err
