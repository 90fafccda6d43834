"""The sample functions' contract: which functions there are, their handlers, and the environment they read.

Read by both sides: the functions' own code (``lambdas.db``) and what runs them (the Pulumi program's
``Functions`` component, the local invoker). Standard library only, and importing nothing: the Pulumi
program imports it without psycopg, which only the functions' zip and the local stack have.
"""

from __future__ import annotations

from dataclasses import dataclass

# -- the environment a function reads (lambdas/db.py) --------------------------------------------

PREPARED_ENV = "LIFEGUARD_POOLER_PREPARED_STATEMENTS"
"""``1`` when the pooler tracks prepared statements (``PoolerSettings.tracks_prepared_statements``)."""
CONNECT_TIMEOUT_ENV = "LIFEGUARD_CONNECT_TIMEOUT"
STATEMENT_TIMEOUT_ENV = "LIFEGUARD_STATEMENT_TIMEOUT_MS"
NODE_CA_ENV = "NODE_EXTRA_CA_CERTS"
"""The pooler's CA file, set on every function the kit wires: Node.js adds it to its trusted CAs at
start, so a Node driver that reads no ``sslrootcert`` (postgres.js) verifies the pooler as printed."""


# -- the functions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleFunction:
    name: str
    """As the handlers call themselves (``api.run``), the example events' folder and the local invoker's name."""
    key: str
    """Resource and output name stem on AWS, e.g. ``read-invoices``."""
    module: str
    """The handler's module inside the zip (the package folder is kept: ``lambdas.<module>``)."""

    @property
    def handler(self) -> str:
        """Lambda's ``handler`` setting: ``<module>.handler``."""
        return f"{self.module}.handler"


READ_INVOICES = SampleFunction("read_invoices", "read-invoices", "lambdas.read_invoices")
CHARGE_CREDITS = SampleFunction("charge_credits", "charge-credits", "lambdas.charge_credits")
FUNCTIONS = (READ_INVOICES, CHARGE_CREDITS)

# -- the Node.js function (lambdas-node/) ------------------------------------------------------------

NODE_SOURCE_DIR = "lambdas-node"
"""Its folder at the repository's root: ES modules, package.json and package-lock.json."""
READ_INVOICES_NODE = SampleFunction("read_invoices_node", "read-invoices-node", "read_invoices")
"""``read_invoices`` on Node.js: :data:`READ_INVOICES`' events and answers (it logs as ``read_invoices``);
``read_invoices.mjs`` at the zip's root, so its handler is ``read_invoices.handler``."""
NODE_FUNCTIONS = (READ_INVOICES_NODE,)
