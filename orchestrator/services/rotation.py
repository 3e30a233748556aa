"""Re-encrypting stored secrets under the current ORCH_SECRET (``orchestrator secrets
rotate``), while ORCH_PREVIOUS_SECRETS still opens the old ones. See docs/security.md."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from orchestrator.crypto import Vault
from orchestrator.secretdata import SEALED
from orchestrator.store import vaulted
from orchestrator.store.db import Database


@dataclass
class RotationReport:
    reencrypted: dict[str, int] = field(default_factory=dict)
    current: int = 0  # already under the current secret
    unreadable: list[str] = field(default_factory=list)  # "table:key", no known secret opens it
    changed_meanwhile: int = 0  # updated by the engine during the run: run again


def _rotate_one(vault: Vault, token: str) -> str | None:
    plain = vault.decrypt(token)
    return None if plain is None else vault.encrypt(plain)


def rotate(db: Database, vault: Vault) -> RotationReport:
    """Re-encrypt every stored secret not under the current secret, one by one."""
    report = RotationReport()
    with db.read() as conn:
        items = list(vaulted.stored_values(conn, SEALED))
    for item in items:
        if item.table in ("callbacks", "effects"):
            payload = json.loads(item.value)
            token = payload.get(SEALED)
        else:
            payload, token = None, item.value
        if not isinstance(token, str) or vault.is_current(token):
            report.current += 1
            continue
        fresh = _rotate_one(vault, token)
        if fresh is None:
            report.unreadable.append(f"{item.table}:{item.key}")
            continue
        new_value = fresh if payload is None else json.dumps({**payload, SEALED: fresh})
        with db.write() as conn:
            swapped = vaulted.replace_value(conn, item, new_value)
        if swapped:
            report.reencrypted[item.table] = report.reencrypted.get(item.table, 0) + 1
        else:
            report.changed_meanwhile += 1
    return report
