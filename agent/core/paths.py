"""Where ownrec keeps things.

Personal data (database, adapters, config) lives in the user data directory; `OWNREC_HOME`
overrides it. Prepared models are derived from PyPI packages and can be rebuilt at any time, so
they live in the user cache directory; `OWNREC_MODELS` overrides it. `ownrec forget --all` deletes
the first and never needs to touch the second.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import platformdirs

APP_NAME = "ownrec"


def data_dir() -> Path:
    override = os.environ.get("OWNREC_HOME")
    path = Path(override) if override else Path(platformdirs.user_data_dir(APP_NAME))
    path.mkdir(parents=True, exist_ok=True)
    return path


def models_dir() -> Path:
    override = os.environ.get("OWNREC_MODELS")
    return Path(override) if override else Path(platformdirs.user_cache_dir(APP_NAME)) / "models"


def database_path() -> Path:
    return data_dir() / "ownrec.db"


def config_path() -> Path:
    return data_dir() / "config.toml"


def adapters_dir() -> Path:
    path = data_dir() / "adapters"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def temporary_home(prefix: str = "ownrec-") -> Iterator[Path]:
    """A throwaway data directory for benchmarks and evaluations, which must never touch the
    person's own: OWNREC_HOME points at it until the block ends, then it is deleted."""
    old = os.environ.get("OWNREC_HOME")
    with tempfile.TemporaryDirectory(prefix=prefix) as home:
        os.environ["OWNREC_HOME"] = home
        try:
            yield Path(home)
        finally:
            if old is None:
                os.environ.pop("OWNREC_HOME", None)
            else:
                os.environ["OWNREC_HOME"] = old
