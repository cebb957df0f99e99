"""Where ownrec keeps things.

Personal data (database, adapters, config) lives in one data folder, a `Home`: by default the user
data directory, which `OWNREC_HOME` overrides; the lab gives each simulated person a `Home` of their own. Prepared models are derived from PyPI packages and can be rebuilt at any time, so
they live in the user cache directory; `OWNREC_MODELS` overrides it. `ownrec forget --all` deletes
the first and never needs to touch the second.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP_NAME = "ownrec"


@dataclass(frozen=True)
class Home:
    """One person's data folder and the places in it. Folders are made when first asked for."""

    root: Path

    @classmethod
    def default(cls) -> "Home":
        override = os.environ.get("OWNREC_HOME")
        return cls(Path(override) if override else Path(platformdirs.user_data_dir(APP_NAME)))

    def folder(self, *parts: str) -> Path:
        path = self.root.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def database(self) -> Path:
        return self.root / "ownrec.db"

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    @property
    def traits(self) -> Path:
        """The person's own trait definitions."""
        return self.root / "traits.toml"

    def adapters(self) -> Path:
        return self.folder("adapters")

    def sync(self) -> Path:
        """The coordinator pin and this device's signing key."""
        return self.root / "sync"

    def owned(self) -> list[Path]:
        """Every file and folder ownrec may create here: what forgetting everything removes (the folder
        may be shared with other things, which are left alone). `ownrec recover`'s new database and the
        damaged one set aside are the person's data too."""
        return [self.database, Path(f"{self.database}-wal"), Path(f"{self.database}-shm"), self.config, self.traits,
                self.root / "adapters", self.root / "exports", self.root / "sync", self.root / "logs",
                *sorted(self.root.glob("ownrec-recovered-*.db")), *sorted(self.root.glob("ownrec.db*.damaged"))]

    def remove_owned(self) -> list[Path]:
        """Delete everything `owned` that exists (and the folder, if that leaves it empty); what was deleted."""
        removed = []
        for path in self.owned():
            if path.is_dir():
                shutil.rmtree(path)
                removed.append(path)
            elif path.exists():
                path.unlink()
                removed.append(path)
        if self.root.exists() and not any(self.root.iterdir()):
            self.root.rmdir()
        return removed


def data_dir() -> Path:
    return Home.default().folder()


def models_dir() -> Path:
    override = os.environ.get("OWNREC_MODELS")
    return Path(override) if override else Path(platformdirs.user_cache_dir(APP_NAME)) / "models"


def database_path() -> Path:
    return Home(data_dir()).database


def config_path() -> Path:
    return Home(data_dir()).config


def adapters_dir() -> Path:
    return Home.default().adapters()
