"""The CLI's exit codes: one per class of failure, so a script can tell a typo from a refusal
from a server that is down. `trunkplane --help` and the README print this table."""

from __future__ import annotations

from enum import IntEnum

import grpc


class Exit(IntEnum):
    OK = 0
    FAILED = 1  # a check found a problem (doctor), or an error of no other class
    USAGE = 2  # the command line is wrong (argparse's own code)
    VIEW_DIFFERS = 3  # projections verify: the view differs from a fresh rebuild
    TAMPERED = 4  # audit verify: the stored log was edited behind the service's back
    UNAVAILABLE = 5  # no answer: server down, TLS failed, deadline passed
    NOT_ALLOWED = 6  # no or bad credentials, or the role or the route does not allow it
    INVALID = 7  # the server refused the input: every field that is wrong is listed
    NOT_FOUND = 8  # no such trunk, route, lease...
    CONFLICT = 9  # exists already, in use, changed since your etag, wrong state
    EXHAUSTED = 10  # a limit: no free channel, rate limit, daily cap
    SETTINGS = 11  # a TRUNKPLANE_* setting or a local file is wrong


MEANING = {
    Exit.OK: "success",
    Exit.FAILED: "a check failed (doctor), or an error of no other class",
    Exit.USAGE: "the command line is wrong",
    Exit.VIEW_DIFFERS: "projections verify: the view differs from a fresh rebuild",
    Exit.TAMPERED: "audit verify: the log was edited behind the service's back",
    Exit.UNAVAILABLE: "the service did not answer: not running, TLS failed, too slow",
    Exit.NOT_ALLOWED: "UNAUTHENTICATED or PERMISSION_DENIED",
    Exit.INVALID: "INVALID_ARGUMENT: the input breaks a rule; nothing was changed",
    Exit.NOT_FOUND: "NOT_FOUND",
    Exit.CONFLICT: "ALREADY_EXISTS, FAILED_PRECONDITION or ABORTED (stale etag)",
    Exit.EXHAUSTED: "RESOURCE_EXHAUSTED: a limit was reached",
    Exit.SETTINGS: "a TRUNKPLANE_* setting or a local file is wrong",
}

_BY_CODE = {
    grpc.StatusCode.UNAVAILABLE: Exit.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: Exit.UNAVAILABLE,
    grpc.StatusCode.UNAUTHENTICATED: Exit.NOT_ALLOWED,
    grpc.StatusCode.PERMISSION_DENIED: Exit.NOT_ALLOWED,
    grpc.StatusCode.INVALID_ARGUMENT: Exit.INVALID,
    grpc.StatusCode.OUT_OF_RANGE: Exit.INVALID,
    grpc.StatusCode.NOT_FOUND: Exit.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS: Exit.CONFLICT,
    grpc.StatusCode.FAILED_PRECONDITION: Exit.CONFLICT,
    grpc.StatusCode.ABORTED: Exit.CONFLICT,
    grpc.StatusCode.RESOURCE_EXHAUSTED: Exit.EXHAUSTED,
}


def for_status(code: grpc.StatusCode) -> Exit:
    return _BY_CODE.get(code, Exit.FAILED)


def table_text() -> str:
    return "\n".join(f"  {int(code):>2}  {MEANING[code]}" for code in Exit)
