"""tests/pgbouncer runs every test on two releases: the shipped one and Debian 12's own (1.18).

The second leg exists only where Debian's ``pgbouncer`` package is installed and is another release
(tests/pgbouncer/conftest.py). Where it is not, this test skips, and CI fails on that skip
(tests/ci_skips.py): a run on one release would leave the README's 1.18 claims unproven.
"""

from __future__ import annotations

import pytest

from lifeguard.stack.pooler import installed_version, other_debian_pgbouncer
from lifeguard.stack.system import find_pgbouncer


def test_a_second_release_is_tested() -> None:
    other = other_debian_pgbouncer()
    if other is None:
        pytest.skip("Debian's own PgBouncer is missing or is the shipped release (apt-get install pgbouncer on "
                    "Debian 12 gives 1.18): tests/pgbouncer ran on the shipped release only")
    older, shipped = installed_version(other), installed_version(find_pgbouncer())
    assert older != shipped
    # The release without prepared-statement support, which the version-aware renderer exists for.
    assert not older.accepts("max_prepared_statements") and shipped.accepts("max_prepared_statements")
