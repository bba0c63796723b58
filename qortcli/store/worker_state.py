"""The worker's small state collection (`worker_state`): `_id` "worker" (host, pid, heartbeat, next runs) and
"job:<id>" (each job's last result). Written by `qortcli worker` only; read by `status` and the viewer."""

from __future__ import annotations

from qortcli.store.ops import to_plain

COLLECTION = "worker_state"


def set_state(db, state_id: str, fields: dict) -> None:
    """Set `fields` on the record `state_id` ("worker" or "job:<id>"), creating it when missing."""
    db[COLLECTION].update_one({"_id": state_id}, {"$set": to_plain(fields)}, upsert=True)


def states(db, state_ids: list[str]) -> dict[str, dict]:
    """The records among `state_ids` that exist, by id ({} when no worker ever ran: nothing is created)."""
    if COLLECTION not in db.list_collection_names():
        return {}
    return {doc["_id"]: doc for doc in db[COLLECTION].find({"_id": {"$in": list(state_ids)}})}
