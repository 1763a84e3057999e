"""flick's errors as exceptions: one class per FLICK_E* code, all under `flick.Error`."""

from __future__ import annotations

import enum
from typing import Optional

from . import _lib


class Code(enum.IntEnum):
    """FLICK_E* codes (flick.h); the list only grows."""

    OK = 0
    EINVAL = -1
    ENOTFOUND = -2
    EIO = -3
    EKVM = -4
    ENOMEM = -5
    EMALFORMED = -6
    EUNSUPPORTED = -7
    EGUEST = -8
    ETIMEOUT = -9
    EBUSY = -10
    ELIMIT = -11
    ECANCELLED = -12
    ENETWORK = -13
    EINTEGRITY = -14
    EEXISTS = -15
    ELEASE = -16
    EINTERNAL = -100


class ErrorClass(enum.IntEnum):
    """Which part of flick a failure came from (flick_error_class)."""

    NONE = 0
    INVALID_ARGUMENT = 1
    OS = 2
    VMM = 3
    IMAGE = 4
    REGISTRY = 5
    MACHINE = 6
    STORE = 7
    CALLBACK = 8
    INTERNAL = 9


def _enum_or_int(kind: type[enum.IntEnum], value: int) -> int:
    try:
        return kind(value)
    except ValueError:
        return value  # a code or class newer than this package


class Error(Exception):
    """A failed flick call: `code` (a `Code`), `error_class` (an `ErrorClass`), `errno` (of
    the failed system call, or 0) and the library's message."""

    def __init__(self, message: str, code: int = Code.EINTERNAL, error_class: int = ErrorClass.NONE,
                 errno: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.code = _enum_or_int(Code, code)
        self.error_class = _enum_or_int(ErrorClass, error_class)
        self.errno = errno

    def __repr__(self) -> str:
        code = self.code.name if isinstance(self.code, Code) else self.code
        return f"{type(self).__name__}({self.message!r}, code={code})"


class InvalidArgument(Error, ValueError):
    """FLICK_EINVAL: a bad argument, a closed handle, a bad config field (the message names it)."""


class NotFound(Error, LookupError):
    """FLICK_ENOTFOUND: no such file, image, machine, volume, app, lease or key."""


class IOFailure(Error):
    """FLICK_EIO."""


class KVMUnavailable(Error):
    """FLICK_EKVM: /dev/kvm missing or lacking a capability."""


class OutOfMemory(Error, MemoryError):
    """FLICK_ENOMEM."""


class Malformed(Error, ValueError):
    """FLICK_EMALFORMED: JSON, a kernel or an image is not what it claims to be."""


class Unsupported(Error):
    """FLICK_EUNSUPPORTED."""


class GuestFailure(Error):
    """FLICK_EGUEST: the guest crashed, or a machine reached `failed`."""


class Timeout(Error):
    """FLICK_ETIMEOUT."""


class Busy(Error):
    """FLICK_EBUSY: the machine's state does not allow the call."""


class LimitExceeded(Error):
    """FLICK_ELIMIT."""


class Cancelled(Error):
    """FLICK_ECANCELLED: a callback asked to stop."""


class NetworkFailure(Error):
    """FLICK_ENETWORK."""


class IntegrityFailure(Error):
    """FLICK_EINTEGRITY: a digest did not match."""


class AlreadyExists(Error):
    """FLICK_EEXISTS."""


class LeaseHeld(Error):
    """FLICK_ELEASE: another holds the machine's lease."""


class InternalError(Error):
    """FLICK_EINTERNAL: a bug in flick."""


_BY_CODE: dict[int, type[Error]] = {
    Code.EINVAL: InvalidArgument,
    Code.ENOTFOUND: NotFound,
    Code.EIO: IOFailure,
    Code.EKVM: KVMUnavailable,
    Code.ENOMEM: OutOfMemory,
    Code.EMALFORMED: Malformed,
    Code.EUNSUPPORTED: Unsupported,
    Code.EGUEST: GuestFailure,
    Code.ETIMEOUT: Timeout,
    Code.EBUSY: Busy,
    Code.ELIMIT: LimitExceeded,
    Code.ECANCELLED: Cancelled,
    Code.ENETWORK: NetworkFailure,
    Code.EINTEGRITY: IntegrityFailure,
    Code.EEXISTS: AlreadyExists,
    Code.ELEASE: LeaseHeld,
    Code.EINTERNAL: InternalError,
}


def error_for(code: int, message: str, error_class: int = ErrorClass.NONE, errno: int = 0) -> Error:
    """The exception for a FLICK_E* code (`Error` itself for a code this package lacks)."""
    return _BY_CODE.get(code, Error)(message, code, error_class, errno)


def last_error(rc: int, fallback: Optional[str] = None) -> Error:
    """The exception for `rc`, from this thread's flick_error_last() (read at once: the next
    flick call on this thread replaces it)."""
    e = _lib.lib().flick_error_last().contents
    message = e.message.decode("utf-8", errors="replace") if e.message else ""
    code = e.code if e.code == rc else rc
    if not message:
        message = fallback or f"flick call failed ({rc})"
    return error_for(code, message, e.error_class, e.sys_errno)


def check(rc: int) -> None:
    """Raises the error a flick call reported, if any."""
    if rc != 0:
        raise last_error(rc)
