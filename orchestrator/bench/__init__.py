"""``orchestrator bench``: round trips per second against the Twilio simulator.

A tool, not part of the product's runtime path: nothing ``serve`` or ``worker`` imports
comes from here (the CLI imports ``run`` only when ``bench`` is the command).

- ``run``: starts the simulator and the orchestrator's processes, measures, reports.
- ``load``: the load client (submissions over the REST API) and readiness checks.
- ``processes``: the processes the bench starts; their CPU and peak memory.
- ``reads``: every query the bench makes (its tasks' progress and latencies,
  PostgreSQL's statistics views).
- ``sql_counts``: statements and transactions counted in the server processes.
- ``pg_watch``: PostgreSQL's counters and its backends' CPU.
- ``report``: the printed lines.
"""
