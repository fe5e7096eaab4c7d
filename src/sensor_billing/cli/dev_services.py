"""The commands use a running `sensor-billing dev`'s services for what is not configured.

Precedence stays the environment, then `.env`, then what dev wrote to `dev-services.json` in
its data folder (`devtools/dev_services.py`), then the defaults. Which of dev's values a
command used is said once, on stderr, so stdout stays clean for `--json` and pipes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from sensor_billing.cli.errors import stderr
from sensor_billing.devtools.dev_services import find_running_dev
from sensor_billing.settings import Fallback


def note(message: str) -> None:
    stderr.print(f"note: {message}", highlight=False, soft_wrap=True, markup=False)


def running_dev_fallback(data_dir: Path) -> Fallback:
    """Dev's values for the variables the environment and `.env` leave unset."""

    def values(configured: set[str]) -> Mapping[str, str]:
        lookup = find_running_dev(data_dir)
        if lookup.unused_because is not None:
            note(
                f"{data_dir}: {lookup.unused_because}; the settings come from the "
                "environment, .env and the defaults"
            )
            return {}
        if lookup.services is None:
            return {}
        offered = lookup.services.settings
        used = {name: value for name, value in offered.items() if name not in configured}
        overridden = sorted(name for name in offered if name in configured)
        source = f"the services of sensor-billing dev in {data_dir} (pid {lookup.services.pid})"
        if not used:
            note(f"not using {source}: the environment or .env sets all of them")
            return {}
        message = f"using {source} for {', '.join(sorted(used))}"
        if overridden:
            message += f"; the environment or .env sets {', '.join(overridden)}"
        note(message)
        return used

    return values
