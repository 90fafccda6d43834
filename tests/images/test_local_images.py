"""`lifeguard local up --images`: the local stack's PgBouncer and migration job from the built images."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import psycopg
import pytest

from lifeguard.stack.containers import DOCKER_DIR_ENV
from lifeguard.stack.docker_engine import DockerEngine
from lifeguard.stack.stack import LocalStack, StackOptions
from lifeguard.stack.system import free_port


def test_local_up_with_images_serves_the_pooled_url_from_the_pooler_image(
    engine: DockerEngine, images: object, state_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DOCKER_DIR_ENV, str(engine.root))  # the tier's cached engine, not a cold one
    stack = LocalStack(state_root / "local-images")
    messages: list[str] = []
    config = None
    try:
        config = stack.up(StackOptions(pg_port=free_port(), pooler_port=free_port()), progress=messages.append,
                          images=True)
        assert any("from lifeguard-pgbouncer:local" in m for m in messages), messages
        assert any("applied" in m or "migrat" in m for m in messages), messages
        with psycopg.connect(stack.pooled_url(config), connect_timeout=10) as conn:
            # Migrated by the migrator image: the demo orgs (a local stack has demo data) and the smoke test's org.
            orgs = {row[0] for row in conn.execute("SELECT name FROM orgs").fetchall()}
            assert orgs == {"acme", "globex", "lifeguard-smoke"}
            # As the application role, which the migrator image provisioned with PgBouncer's verifier.
            assert conn.execute("SELECT current_user").fetchone() == (config.user,)
            assert conn.execute("SHOW port").fetchone() == (str(config.pg_port),)  # through PgBouncer to Postgres
        names = engine.docker("ps", "--format", "{{.Names}} {{.Image}}").stdout
        assert "lifeguard-local-pooler-pgbouncer lifeguard-pgbouncer:local" in names
        # As the shipped task definition: a read-only root filesystem.
        readonly = engine.docker("inspect", "--format", "{{.HostConfig.ReadonlyRootfs}}",
                                 "lifeguard-local-pooler-pgbouncer").stdout.strip()
        assert readonly == "true"
    finally:
        print("\n".join(messages))
        stack.down(progress=messages.append)
        # `down` stops the engine as a user expects; the rest of the tier needs it back.
        assert not engine.running()
        # Nothing left mounted: `down --purge` can delete the state directory.
        assert not [ns for ns in (engine.root / "exec" / "netns").glob("*") if os.path.ismount(ns)]
        engine.start()
        # As root the stopped cluster lives under /var/lib/lifeguard, which the tier's temporary folder does not hold.
        if stack.service_dir != stack.state_dir:
            shutil.rmtree(stack.service_dir, ignore_errors=True)
