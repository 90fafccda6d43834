"""One ComponentResource per concern: network, database, pooler, secrets, functions, migration job."""
