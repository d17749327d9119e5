"""Domain errors. Each maps to one gRPC status code in the API layer."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class DomainError(Exception):
    """Base class of every error a command can raise on purpose."""


class ValidationError(DomainError):
    """Bad input: one or more fields break a rule. Nothing was changed."""

    def __init__(self, violations: list[FieldViolation]) -> None:
        self.violations = violations
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in violations))

    @classmethod
    def single(cls, field: str, description: str) -> ValidationError:
        return cls([FieldViolation(field, description)])


class NotFoundError(DomainError):
    pass


class AlreadyExistsError(DomainError):
    pass


class PreconditionError(DomainError):
    """The command is valid but the current state forbids it."""

    def __init__(self, message: str, subjects: list[str] | None = None) -> None:
        self.subjects = subjects or []
        super().__init__(message)


class ConflictError(DomainError):
    """A stale etag: the caller read an older version than the stored one."""


class Violations:
    """Collects field violations so one request reports all of its mistakes at once."""

    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self.items.append(FieldViolation(field, description))

    def fields(self) -> set[str]:
        return {v.field for v in self.items}

    def raise_if_any(self) -> None:
        if self.items:
            raise ValidationError(self.items)


class ForbiddenError(DomainError):
    """The caller (an extension) may not use what it asked for."""
