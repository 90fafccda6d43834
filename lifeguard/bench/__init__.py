"""``lifeguard bench``: pooled against direct on one machine, in one run (spike, churn, warm)."""
