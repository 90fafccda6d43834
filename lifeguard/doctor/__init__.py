"""``lifeguard doctor``: will this connection string survive a spike?

Six checks for any Postgres URL (the kit's stack, RDS Proxy, Neon, Supabase, a self-hosted
PgBouncer), each an ok / warn / fail finding with one line on what to change:

1. pooled or direct (:mod:`.pooling`, on the migration job's guard: addresses, then backend pids);
2. protocol-level prepared statements across transactions (:mod:`.prepared`);
3. session state across transactions and clients (:mod:`.session_state`);
4. connection headroom (:mod:`.headroom`);
5. TLS (:mod:`.tls`);
6. the pooled/direct pair (:mod:`.pair`);

and, for a pooler whose release it can read, a warning when that PgBouncer release has a known
vulnerability (:mod:`.release`, over :mod:`pgbouncer.advisories`).

A few round trips per URL, short-lived extra connections for the probes, a connect timeout, no load.
"""

from lifeguard.doctor.findings import Finding, Report, Status
from lifeguard.doctor.run import run_doctor

__all__ = ["Finding", "Report", "Status", "run_doctor"]
