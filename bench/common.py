"""What every benchmark prints and shares: the machine it ran on, and a fixed cipher key."""

from __future__ import annotations

import os
import platform
from pathlib import Path

KEY = "x8IuD0sEXGOXjG8ygnTpGaYgk9ip3kmMOW71V7tKmXQ="


def server_env(directory: Path, address: str, **more: str) -> dict[str, str]:
    """What every bench's `trunkplane serve` runs with: its own data directory and address,
    quiet logs, no metrics and no rate limits; `more`: the bench's own settings."""
    return {**os.environ, "TRUNKPLANE_DATA": str(directory), "TRUNKPLANE_LISTEN": address,
            "TRUNKPLANE_CIPHER_KEY": KEY, "TRUNKPLANE_LOG_LEVEL": "WARNING",
            "TRUNKPLANE_METRICS_LISTEN": "off", "TRUNKPLANE_RATE_LIMIT": "0",
            "TRUNKPLANE_ADDRESS_RATE_LIMIT": "0", "TRUNKPLANE_TOTAL_RATE_LIMIT": "0", **more}


def machine() -> str:
    model = "unknown cpu"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (f"{platform.node()}: {model}, {os.cpu_count()} cores, Python "
            f"{platform.python_version()}, {platform.system()} {platform.release()}")
