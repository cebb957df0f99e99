"""Small builders the importer tests share: files to import, and what the store then holds."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from agent.core.store import Store


def ts(text: str) -> float:
    moment = datetime.fromisoformat(text)
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def write(path: Path, text: str, bom: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def by_title(store: Store) -> dict[str, object]:
    return {item.title: item for item in store.items()}


def feedback(store: Store) -> list[tuple[str, str, float | None, float, str]]:
    titles = {item.id: item.title for item in store.items()}
    return sorted((titles[i.item_id], i.kind, i.value, i.at, i.origin) for i in store.interactions())
