"""The project's exceptions: one base, subclasses that also match a builtin."""

from __future__ import annotations

from collections.abc import Mapping


class TraceLoomError(Exception):
    """Base of every error TraceLoom raises on purpose."""


class InvalidRequest(TraceLoomError, ValueError):
    """A request body or parameter is wrong; ``fields`` maps field to reason."""

    def __init__(self, fields: Mapping[str, str]) -> None:
        self.fields = dict(fields)
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.fields.items()))


class NotFound(TraceLoomError, LookupError):
    """The named thing does not exist (or is not visible to the caller)."""


class Unauthorized(TraceLoomError, PermissionError):
    """No valid credentials were presented."""


class Forbidden(TraceLoomError, PermissionError):
    """Valid credentials without the needed scope."""


class Conflict(TraceLoomError):
    """The request contradicts the current state (e.g. a finished run)."""


class RunFailure(TraceLoomError):
    """A run cannot go on; the message is the reason stored on the run."""


class SourceError(RunFailure):
    """The test source could not be fetched or does not hold the suite."""


class SetupFailed(RunFailure):
    """The setup steps of ``traceloom.yml`` failed on a host: the run ends."""


class HostError(RunFailure):
    """A host could not be provisioned, reached or used."""


class BatchNotStarted(HostError):
    """A batch recorded as running never started on its host (the control
    plane stopped between recording it and starting it): run it again."""


class RemoteCommandError(HostError):
    """A command on a host failed; carries where, what, status and output."""

    def __init__(
        self, *, host: str, command: str, exit_status: int | None, output_tail: str
    ) -> None:
        self.host = host
        self.command = command
        self.exit_status = exit_status
        self.output_tail = output_tail
        super().__init__(
            f"{command!r} on {host} exited with {exit_status}: {output_tail}"
        )
