"""The Feast store of one serving process, and one online reader per feature service in use.

Why a module of its own: every Feast call of the server goes through glue/adapters/feast.py (the
Feast adapter); this is the small piece of state around it that the reloader replaces after an
outage and that requests read from. Opening the store is the adapter's
:func:`~glue.adapters.feast.open_online_store`; reading is its :class:`~glue.adapters.feast.OnlineReader`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from feast import FeatureStore

    from glue.adapters.feast import OnlineReader
    from glue.settings import Settings


def open_store(settings: Settings) -> StoreHandle:
    """Open the profile's Feast store for serving: no per-read MLflow logging, registry warm."""
    from glue.adapters import feast

    return StoreHandle(store=feast.open_online_store(settings), opened_at=time.time())


@dataclass
class StoreHandle:
    """The Feast store of this process and one reader per feature service in use."""

    store: FeatureStore
    opened_at: float
    readers: dict[str, OnlineReader] = field(default_factory=dict)

    def reader(self, service: str) -> OnlineReader:
        """The online reader of one feature service, built on first use (lookups done once)."""
        found = self.readers.get(service)
        if found is None:
            from glue.adapters.feast import OnlineReader

            found = self.readers[service] = OnlineReader(self.store, service)
        return found

    def refresh(self) -> None:
        """Reload Feast's registry cache (between requests, so no request pays for an expired one)."""
        from glue.adapters import feast

        feast.refresh_registry(self.store)

    def kind(self) -> str:
        """The online store's type, for the log."""
        from glue.adapters import feast

        return feast.online_store_type(self.store)
