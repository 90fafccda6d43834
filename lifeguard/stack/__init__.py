"""The local stack (`lifeguard local`): Postgres as RDS, PgBouncer from the shipped renderer, the migration job.

Its own processes (:mod:`.postgres`, :mod:`.pooler`, :mod:`.procs`), or the images on a private Docker
engine (:mod:`.containers`, :mod:`.docker_engine`, :mod:`.ecs_run`), assembled by :mod:`.stack`;
``lifeguard local top`` reads its consoles (:mod:`.top`).
"""
