"""`python -m infra.messaging.release`: writes a new version of every Avro schema the code
changed, then checks that every version of every record reads every other."""

from __future__ import annotations

import sys

from infra.messaging.schemas import SCHEMA_DIR, compatibility_problems, release, released


def main(argv: list[str]) -> int:
    if argv:
        print("usage: python -m infra.messaging.release", file=sys.stderr)
        return 2
    for path in release():
        print(f"wrote {path.relative_to(SCHEMA_DIR.parent.parent.parent)}")
    problems = [p for versions in released().values() for p in compatibility_problems(versions)]
    for problem in problems:
        print(f"INCOMPATIBLE: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
