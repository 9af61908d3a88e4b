"""The one error hierarchy. Each class carries its exit code (DESIGN §4) and a hint
naming what to run next. Anything that is not an ``LlctlError`` is a bug (exit 1)."""

from __future__ import annotations

from typing import Any

OK = 0
INTERNAL = 1
USAGE = 2
CHECK_FAILED = 3
NOT_FOUND = 4
PRECONDITION = 5
CONFIG = 6
UNAVAILABLE = 7
DECLINED = 8
INTERRUPTED = 130

EXIT_CODES = {
    OK: "ok",
    INTERNAL: "internal error (a bug: please report it with --debug output)",
    USAGE: "usage error (bad flag or argument)",
    CHECK_FAILED: "a check ran and said no (validation rejected, drift found, doctor findings)",
    NOT_FOUND: "not found (version, batch, rule, incident)",
    PRECONDITION: "precondition failed (training stopped, lease held, nothing to promote)",
    CONFIG: "configuration error",
    UNAVAILABLE: "dependency unavailable (state store, registry, server)",
    DECLINED: "declined (not confirmed; non-interactive run without --yes)",
    INTERRUPTED: "interrupted",
}


class LlctlError(Exception):
    """Root of every error llctl reports to a user."""

    exit_code = INTERNAL
    kind = "error"

    def __init__(self, message: str, *, hint: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": type(self).__name__,
            "kind": self.kind,
            "message": self.message,
            "exit_code": self.exit_code,
        }
        if self.hint:
            out["hint"] = self.hint
        if self.details:
            out["details"] = self.details
        return out


class UsageError(LlctlError):
    exit_code = USAGE
    kind = "usage"


class CheckFailedError(LlctlError):
    exit_code = CHECK_FAILED
    kind = "check_failed"


class NotFoundError(LlctlError):
    exit_code = NOT_FOUND
    kind = "not_found"


class PreconditionError(LlctlError):
    exit_code = PRECONDITION
    kind = "precondition"


class ConfigError(LlctlError):
    exit_code = CONFIG
    kind = "config"


class UnavailableError(LlctlError):
    exit_code = UNAVAILABLE
    kind = "unavailable"


class DeclinedError(LlctlError):
    exit_code = DECLINED
    kind = "declined"


class TrainingHaltedError(PreconditionError):
    """Training is stopped; ``llctl resume`` lifts it."""


class LeaseHeldError(PreconditionError):
    """Another trainer holds the training lease."""


class GenerationConflictError(PreconditionError):
    """The deployment row changed under us (compare-and-set lost)."""


class StoreUnavailableError(UnavailableError):
    """The state store cannot be reached."""


class StoreOutdatedError(PreconditionError):
    """The store's schema is older (or newer) than this llctl."""


class WorkspaceNotFoundError(ConfigError):
    """No llctl.yaml where one was expected."""


class ModelNotFoundError(ConfigError):
    """The model named by --model, LLCTL_MODEL or model.name is not in the store (or none was named
    and the store holds several): a configuration problem, exit 6."""


class ModelVersionNotFoundError(NotFoundError):
    pass


class BatchNotFoundError(NotFoundError):
    pass


class PurgeRuleNotFoundError(NotFoundError):
    pass


class InvalidInputError(UsageError):
    """Input data or an expression the user gave is malformed."""


class ExpressionError(InvalidInputError):
    """A ``--where`` expression failed to parse or names an unknown column.

    ``position`` is the 0-based character offset of the problem in the expression."""

    def __init__(self, message: str, *, expression: str, position: int, hint: str | None = None) -> None:
        caret = f"{expression}\n{' ' * position}^"
        super().__init__(
            f"{message} at position {position}",
            hint=hint or "see `llctl purge-data --help` for the --where grammar",
            expression=expression,
            position=position,
            caret=caret,
        )
        self.position = position
