"""The lifeguard migration job: applies ``migrator/migrations`` through the direct URL only.

Run it as ``python -m migrator`` (apply), ``python -m migrator status`` or
``python -m migrator --dry-run``; call it as :func:`migrator.runner.migrate` /
:func:`migrator.runner.status`. It ships as its own image (``migrator/Dockerfile``, context
``migrator/``), so nothing here imports the kit's other packages.

Hand-written rather than yoyo/alembic/dbmate/sqitch: none of them refuses to run through a pooler,
and they lack a run-long lock or a checksum of applied files; see
:mod:`migrator.runner` and docs/migrations.md. A team with its own tool runs it as
``python -m migrator run -- COMMAND`` (:mod:`migrator.wrapper`): the same guard, lock and role.
"""
