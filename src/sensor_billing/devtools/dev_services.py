"""What a running `sensor-billing dev` serves, in a file in its data folder, for the CLI.

Dev writes `<data dir>/dev-services.json` once it is ready: its pid, the settings another
process needs to use its services (DATABASE_URL, REDIS_URL, STRIPE_*, API_URL, the short
usage windows) and the lines it printed. It removes the file when it stops. A dev killed
with SIGKILL cannot, so the file is trusted only while dev's lock on the folder
(`dev.lock`, see `DataDirLock`) is held by the pid the file names. The file holds the webhook
secret and the stand-in's key: mode 0600, written whole or not at all.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sensor_billing.devtools.embedded import DataDirLock, write_private_json

DEFAULT_DATA_DIR = Path(".data")
SERVICES_FILE_NAME = "dev-services.json"
LOCK_FILE_NAME = "dev.lock"


@dataclass(frozen=True)
class DevServices:
    pid: int
    started_at: datetime
    # By environment variable name, as the CLI would read them from the environment.
    settings: dict[str, str]
    banner: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "pid": self.pid,
            "startedAt": self.started_at.isoformat(),
            "settings": self.settings,
            "banner": self.banner,
        }


@dataclass(frozen=True)
class DevLookup:
    """What the data folder says: a running dev's services, or why there are none to use."""

    path: Path
    services: DevServices | None = None
    # Why no services are used although a dev ran or runs in the folder; None: no dev at all.
    unused_because: str | None = None


def write_services(data_dir: Path, services: DevServices) -> None:
    write_private_json(data_dir / SERVICES_FILE_NAME, services.to_json())


def remove_services(data_dir: Path) -> None:
    (data_dir / SERVICES_FILE_NAME).unlink(missing_ok=True)


def find_running_dev(data_dir: Path) -> DevLookup:
    path = data_dir / SERVICES_FILE_NAME
    lock_path = data_dir / LOCK_FILE_NAME
    holder = DataDirLock.holder(lock_path)
    if not path.exists():
        if holder is not None:
            return DevLookup(path, unused_because=_starting(holder))
        if lock_path.exists():
            return DevLookup(path, unused_because="no sensor-billing dev is running there")
        return DevLookup(path)
    try:
        services = _parse(json.loads(path.read_text()))
    except OSError as error:
        return DevLookup(path, unused_because=f"{path.name} cannot be read ({error.strerror})")
    except (ValueError, KeyError, TypeError):
        return DevLookup(path, unused_because=f"{path.name} is not a file sensor-billing dev wrote")
    if holder is None:
        return DevLookup(
            path,
            unused_because=f"the sensor-billing dev that wrote {path.name} (pid {services.pid}) "
            "is not running",
        )
    if holder != services.pid:  # left by a dev that died; the one now starting writes anew
        return DevLookup(path, unused_because=_starting(holder))
    return DevLookup(path, services=services)


def _starting(holder: int) -> str:
    who = f"pid {holder}" if holder else "pid unknown"
    return f"the sensor-billing dev there ({who}) is not ready yet"


def _parse(content: object) -> DevServices:
    if not isinstance(content, dict):
        raise TypeError("not an object")
    settings = content["settings"]
    if not isinstance(settings, dict) or not all(
        isinstance(name, str) and isinstance(value, str) for name, value in settings.items()
    ):
        raise TypeError("settings must map names to strings")
    pid = content["pid"]
    if not isinstance(pid, int):
        raise TypeError("pid must be a number")
    banner = content.get("banner", [])
    return DevServices(
        pid=pid,
        started_at=datetime.fromisoformat(content["startedAt"]).astimezone(UTC),
        settings=settings,
        banner=[str(line) for line in banner] if isinstance(banner, list) else [],
    )


def services_now(settings: dict[str, str], banner: list[str]) -> DevServices:
    """This process's services, as the file records them."""
    return DevServices(
        pid=os.getpid(), started_at=datetime.now(UTC), settings=settings, banner=banner
    )
