"""The load generator `lifeguard demo` and `lifeguard bench` share: function instances cold-started at once.

:mod:`.invoker` (worker processes hosting the sample functions), :mod:`.spike` (a spike and the
backends it opens), :mod:`.gauge` (its live display), :mod:`.chart` (backends over time, as a PNG).
Independent of the local stack: it is given the URLs to point the instances at.
"""
