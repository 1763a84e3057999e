"""flick from Python: hosts, images, machines, apps and volumes over libflick's C ABI
(include/flick/flick.h), with ctypes: nothing to compile.

    import flick
    with flick.Host() as host:
        m = host.create_machine({"image": "busybox", "init": {"cmd": ["sleep", "60"]}})
        m.wait("started", timeout=30)
        print(m.exec(["uname", "-a"]).stdout.decode())
        m.destroy(force=True)

libflick is loaded through its soname (libflick.so.0) or the path in $FLICK_LIBRARY.
"""

from __future__ import annotations

from . import _lib
from .errors import (
    AlreadyExists,
    Busy,
    Cancelled,
    Code,
    Error,
    ErrorClass,
    GuestFailure,
    IntegrityFailure,
    InternalError,
    InvalidArgument,
    IOFailure,
    KVMUnavailable,
    LeaseHeld,
    LimitExceeded,
    Malformed,
    NetworkFailure,
    NotFound,
    OutOfMemory,
    Timeout,
    Unsupported,
)
from .config import Concurrency, Guest, Init, MachineConfig, Mount, Port, Restart, Service, StopConfig
from .host import Host
from .machine import STATES, ExecResult, Machine

__all__ = [
    "AlreadyExists", "Busy", "Cancelled", "Code", "Concurrency", "Error", "ErrorClass", "ExecResult", "Guest",
    "GuestFailure", "Host", "IOFailure", "Init", "IntegrityFailure", "InternalError", "InvalidArgument",
    "KVMUnavailable", "LeaseHeld", "LimitExceeded", "Machine", "MachineConfig", "Malformed", "Mount",
    "NetworkFailure", "NotFound", "OutOfMemory", "Port", "Restart", "STATES", "Service", "StopConfig", "Timeout",
    "Unsupported", "has_feature", "library_version", "version",
]

__version__ = "0.1.0"


def library_version() -> tuple[int, int, int]:
    """The loaded libflick's version as (major, minor, patch)."""
    v = _lib.lib().flick_version()
    return v // 10000, v // 100 % 100, v % 100


def version() -> str:
    """The loaded libflick's version as "major.minor.patch"."""
    return ".".join(str(n) for n in library_version())


def has_feature(name: str) -> bool:
    """Whether this build of libflick has `name`: "kvm", "machines", "images", "registry",
    "volumes", "vsock", "suspend" (a build feature, not this host's state)."""
    return bool(_lib.lib().flick_has_feature(name.encode()))
