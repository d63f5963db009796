"""shmesh exceptions: one class per absl::Status code, all under shmesh.Error."""

import enum


class StatusCode(enum.IntEnum):
    """The canonical status codes (absl::StatusCode, grpc::StatusCode)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class Error(Exception):
    """A failed shmesh call: `.code` is a StatusCode (an int with a `.name`),
    `.message` the status message.

    Raise a subclass (or Error with `code=`) from a service handler to return
    that status to the caller: ``raise shmesh.NotFoundError("no such plan")``.
    """

    code = StatusCode.UNKNOWN

    def __init__(self, message="", code=None):
        """Builds the error; `code` (a StatusCode or int) overrides the class's."""
        super().__init__(message)
        self.message = str(message)
        if code is not None:
            self.code = StatusCode(code)

    def __str__(self):
        return "{}: {}".format(self.code.name, self.message)


class CancelledError(Error):
    """CANCELLED (e.g. receive() on a stopped node). Not asyncio.CancelledError."""
    code = StatusCode.CANCELLED


class UnknownError(Error):
    """UNKNOWN."""
    code = StatusCode.UNKNOWN


class InvalidArgumentError(Error, ValueError):
    """INVALID_ARGUMENT: a bad config, name, topic or an oversized payload."""
    code = StatusCode.INVALID_ARGUMENT


class DeadlineExceededError(Error, TimeoutError):
    """DEADLINE_EXCEEDED: the timeout passed (also a TimeoutError)."""
    code = StatusCode.DEADLINE_EXCEEDED


class NotFoundError(Error):
    """NOT_FOUND: no link to that peer, nobody serves that service, no such file."""
    code = StatusCode.NOT_FOUND


class AlreadyExistsError(Error):
    """ALREADY_EXISTS: the name is taken, or the service is already served."""
    code = StatusCode.ALREADY_EXISTS


class PermissionDeniedError(Error):
    """PERMISSION_DENIED."""
    code = StatusCode.PERMISSION_DENIED


class ResourceExhaustedError(Error):
    """RESOURCE_EXHAUSTED: the peer's ring is full and no wait was asked."""
    code = StatusCode.RESOURCE_EXHAUSTED


class FailedPreconditionError(Error):
    """FAILED_PRECONDITION: not started, already started, handler set after start()."""
    code = StatusCode.FAILED_PRECONDITION


class AbortedError(Error):
    """ABORTED."""
    code = StatusCode.ABORTED


class OutOfRangeError(Error):
    """OUT_OF_RANGE."""
    code = StatusCode.OUT_OF_RANGE


class UnimplementedError(Error):
    """UNIMPLEMENTED."""
    code = StatusCode.UNIMPLEMENTED


class InternalError(Error):
    """INTERNAL (e.g. a service handler raised something that is not a shmesh.Error)."""
    code = StatusCode.INTERNAL


class UnavailableError(Error):
    """UNAVAILABLE: the link or the server went away."""
    code = StatusCode.UNAVAILABLE


class DataLossError(Error):
    """DATA_LOSS."""
    code = StatusCode.DATA_LOSS


class UnauthenticatedError(Error):
    """UNAUTHENTICATED."""
    code = StatusCode.UNAUTHENTICATED


_BY_CODE = {
    cls.code: cls
    for cls in (CancelledError, UnknownError, InvalidArgumentError, DeadlineExceededError,
                NotFoundError, AlreadyExistsError, PermissionDeniedError, ResourceExhaustedError,
                FailedPreconditionError, AbortedError, OutOfRangeError, UnimplementedError,
                InternalError, UnavailableError, DataLossError, UnauthenticatedError)
}


def error_from_status(code, message):
    """The exception instance for a failed status (`code` an int)."""
    try:
        code = StatusCode(code)
    except ValueError:
        return Error(message, StatusCode.UNKNOWN)
    cls = _BY_CODE.get(code, Error)
    return cls(message, code)
