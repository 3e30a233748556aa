"""SQL statements and transactions per round trip, counted inside the server processes
(store/sqlcount.py, switched on with ORCH_SQL_COUNTS) and read before and after the run."""

from __future__ import annotations

from orchestrator.store import sqlcount

SHAPES_SHOWN = 16  # the most frequent transaction shapes printed


def total_counts(directory: str, pids: set[str]) -> dict[str, int]:
    """The sum over the processes ``pids`` of their statement and transaction counts."""
    out: dict[str, int] = {}
    for pid, counts in sqlcount.read_counts(directory).items():
        if pid not in pids:
            continue
        for key, n in counts.items():
            out[key] = out.get(key, 0) + n
    return out


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: n - before.get(k, 0) for k, n in after.items() if n - before.get(k, 0)}


def sql_report(counts: dict[str, int], round_trips: int) -> list[str]:
    """Lines: statements and transactions per round trip, then the statements by kind."""
    rt = max(round_trips, 1)
    stmts = {k[5:]: n for k, n in counts.items() if k.startswith("stmt ")}
    txns = {k[4:]: n for k, n in counts.items() if k.startswith("txn ")}
    lines = [
        f"sql per rt     {sum(stmts.values()) / rt:.1f} statements, "
        f"{txns.get('commit write', 0) / rt:.1f} write + {txns.get('commit read', 0) / rt:.1f} "
        f"read transactions committed, {txns.get('rollback', 0) / rt:.1f} rolled back, "
        f"{txns.get('savepoint', 0) / rt:.1f} savepoints (counted in the server processes)"
    ]
    shapes = sorted(
        ((k[6:], n) for k, n in counts.items() if k.startswith("shape ")), key=lambda kv: -kv[1]
    )
    top = sorted(stmts.items(), key=lambda kv: -kv[1])
    for i in range(0, len(top), 4):
        lines.append(
            "  by kind      " + ", ".join(f"{kind} {n / rt:.1f}" for kind, n in top[i : i + 4])
        )
    for shape, n in shapes[:SHAPES_SHOWN]:
        lines.append(f"  transaction  {n / rt:4.1f} x {shape}")
    return lines
