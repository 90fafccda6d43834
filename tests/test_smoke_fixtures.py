import psycopg

from tests.support import AppDatabase, RunningPooler


def test_direct_and_pooled(app_db: AppDatabase, start_pooler) -> None:  # type: ignore[no-untyped-def]
    with psycopg.connect(app_db.direct_url) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    pooler: RunningPooler = start_pooler()
    with psycopg.connect(pooler.url(), prepare_threshold=None) as conn:
        assert conn.execute("select current_user").fetchone() == (app_db.user,)
