"""What every benchmark prints and shares: the machine it ran on, and a fixed cipher key."""

from __future__ import annotations

import os
import platform
from pathlib import Path

KEY = "x8IuD0sEXGOXjG8ygnTpGaYgk9ip3kmMOW71V7tKmXQ="


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
