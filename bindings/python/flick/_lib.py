"""The C ABI of include/flick/flick.h as ctypes declarations, and the loaded library.

Only this module knows struct layouts and signatures; the rest of the package calls `lib()`.
The library is found through $FLICK_LIBRARY (a path) or else its soname, libflick.so.0.
"""

from __future__ import annotations

import ctypes
import os
import threading
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_char_p,
    c_int,
    c_int64,
    c_size_t,
    c_uint,
    c_uint32,
    c_uint64,
    c_void_p,
)
from typing import Optional

SONAME = "libflick.so.0"

# Options struct versions this package was written against (flick.h's *_VERSION macros).
HOST_OPTIONS_VERSION = 1
PULL_OPTIONS_VERSION = 1
MACHINE_CREATE_OPTIONS_VERSION = 1
MACHINE_FILTER_VERSION = 1
MACHINE_UPDATE_OPTIONS_VERSION = 1
MACHINE_CLONE_OPTIONS_VERSION = 1
EXEC_OPTIONS_VERSION = 1

# Handles are opaque tokens: kept as integers, never dereferenced.
Handle = c_void_p

PULL_PROGRESS_FN = CFUNCTYPE(c_int, c_void_p, c_uint64, c_uint64)


class ErrorStruct(Structure):
    _fields_ = [
        ("code", c_int),
        ("error_class", c_int),
        ("sys_errno", c_int),
        ("message", c_char_p),
    ]


class HostOptions(Structure):
    _fields_ = [
        ("version", c_uint),
        ("state_dir", c_char_p),
        ("cache_dir", c_char_p),
        ("run_dir", c_char_p),
        ("kernel", c_char_p),
        ("kernel_modules", c_char_p),
        ("kvm_device", c_char_p),
        ("vmm_program", c_char_p),
        ("networking", c_int),
        ("default_registry", c_char_p),
        ("insecure_registries", POINTER(c_char_p)),
    ]


class PullOptions(Structure):
    _fields_ = [
        ("version", c_uint),
        ("policy", c_int),
        ("progress", PULL_PROGRESS_FN),
        ("progress_userdata", c_void_p),
    ]


class MachineCreateOptions(Structure):
    _fields_ = [
        ("version", c_uint),
        ("config_json", c_char_p),
        ("app", c_char_p),
        ("name", c_char_p),
        ("region", c_char_p),
        ("skip_launch", c_int),
    ]


class MachineFilter(Structure):
    _fields_ = [
        ("version", c_uint),
        ("app", c_char_p),
        ("states", POINTER(c_int)),
        ("state_count", c_size_t),
        ("metadata", POINTER(c_char_p)),
        ("include_deleted", c_int),
    ]


class MachineUpdateOptions(Structure):
    _fields_ = [
        ("version", c_uint),
        ("config_json", c_char_p),
        ("skip_launch", c_int),
        ("current_version", c_uint64),
    ]


class MachineCloneOptions(Structure):
    _fields_ = [
        ("version", c_uint),
        ("name", c_char_p),
        ("config_json", c_char_p),
        ("skip_launch", c_int),
    ]


class ExecOptions(Structure):
    _fields_ = [
        ("version", c_uint),
        ("argv", POINTER(c_char_p)),
        ("stdin_data", c_void_p),
        ("stdin_len", c_size_t),
        ("timeout_ms", c_int64),
        ("env", POINTER(c_char_p)),
        ("user", c_char_p),
        ("workdir", c_char_p),
    ]


class ExecResult(Structure):
    _fields_ = [
        ("exit_code", c_int),
        ("exit_signal", c_int),
        ("stdout_data", c_void_p),
        ("stdout_len", c_size_t),
        ("stderr_data", c_void_p),
        ("stderr_len", c_size_t),
        ("truncated", c_int),
    ]


# Out parameters: char** is POINTER(c_void_p) so the pointer survives to be freed.
_OUT_STR = POINTER(c_void_p)
_OUT_HANDLE = POINTER(c_void_p)

# name: (restype, argtypes)
_SIGNATURES: dict[str, tuple[object, list[object]]] = {
    "flick_version": (c_int, []),
    "flick_has_feature": (c_int, [c_char_p]),
    "flick_error_last": (POINTER(ErrorStruct), []),
    "flick_free": (None, [c_void_p]),
    "flick_host_options_init": (c_int, [POINTER(HostOptions), c_uint]),
    "flick_host_open": (c_int, [_OUT_HANDLE, POINTER(HostOptions)]),
    "flick_host_close": (c_int, [Handle]),
    "flick_image_pull": (c_int, [_OUT_STR, Handle, c_char_p, POINTER(PullOptions)]),
    "flick_image_list": (c_int, [_OUT_STR, Handle]),
    "flick_image_rootfs": (c_int, [_OUT_STR, Handle, c_char_p, POINTER(PullOptions)]),
    "flick_image_prune": (c_int, [POINTER(c_uint64), POINTER(c_uint64), Handle]),
    "flick_image_rm": (c_int, [POINTER(c_uint64), POINTER(c_uint64), Handle, c_char_p]),
    "flick_machine_state_name": (c_char_p, [c_int]),
    "flick_machine_create": (c_int, [_OUT_HANDLE, Handle, POINTER(MachineCreateOptions)]),
    "flick_machine_open": (c_int, [_OUT_HANDLE, Handle, c_char_p, c_char_p]),
    "flick_machine_free": (None, [Handle]),
    "flick_machine_get": (c_int, [_OUT_STR, Handle]),
    "flick_machine_id": (c_int, [_OUT_STR, Handle]),
    "flick_machine_get_state": (c_int, [POINTER(c_int), Handle]),
    "flick_machine_list": (c_int, [_OUT_STR, Handle, POINTER(MachineFilter)]),
    "flick_machine_start": (c_int, [Handle]),
    "flick_machine_stop": (c_int, [Handle, c_int, c_int64]),
    "flick_machine_signal": (c_int, [Handle, c_int]),
    "flick_machine_wait": (c_int, [Handle, c_int, c_int64]),
    "flick_machine_update": (c_int, [Handle, POINTER(MachineUpdateOptions)]),
    "flick_machine_clone": (c_int, [_OUT_HANDLE, Handle, Handle, POINTER(MachineCloneOptions)]),
    "flick_machine_destroy": (c_int, [Handle, c_int]),
    "flick_machine_exec": (c_int, [POINTER(ExecResult), Handle, POINTER(ExecOptions)]),
    "flick_exec_result_free": (None, [POINTER(ExecResult)]),
    "flick_machine_events": (c_int, [_OUT_STR, Handle]),
    "flick_machine_logs": (c_int, [_OUT_STR, POINTER(c_size_t), Handle]),
    "flick_machine_metadata": (c_int, [_OUT_STR, Handle]),
    "flick_machine_metadata_get": (c_int, [_OUT_STR, Handle, c_char_p]),
    "flick_machine_metadata_set": (c_int, [Handle, c_char_p, c_char_p]),
    "flick_machine_metadata_delete": (c_int, [Handle, c_char_p]),
    "flick_machine_lease_acquire": (c_int, [_OUT_STR, Handle, c_uint32, c_char_p]),
    "flick_machine_lease_get": (c_int, [_OUT_STR, Handle]),
    "flick_machine_lease_release": (c_int, [Handle, c_char_p]),
    "flick_machine_set_lease_nonce": (c_int, [Handle, c_char_p]),
    "flick_machine_cordon": (c_int, [Handle]),
    "flick_machine_uncordon": (c_int, [Handle]),
    "flick_app_create": (c_int, [_OUT_STR, Handle, c_char_p, c_char_p]),
    "flick_app_list": (c_int, [_OUT_STR, Handle]),
    "flick_app_destroy": (c_int, [Handle, c_char_p, c_int]),
    "flick_volume_create": (c_int, [_OUT_STR, Handle, c_char_p, c_char_p, c_uint64]),
    "flick_volume_list": (c_int, [_OUT_STR, Handle, c_char_p]),
    "flick_volume_extend": (c_int, [_OUT_STR, Handle, c_char_p, c_char_p, c_uint64]),
    "flick_volume_destroy": (c_int, [Handle, c_char_p, c_char_p]),
}

_lock = threading.Lock()
_lib: Optional[ctypes.CDLL] = None


def library_path() -> str:
    """What is loaded: $FLICK_LIBRARY when set, else the soname for the dynamic loader."""
    return os.environ.get("FLICK_LIBRARY") or SONAME


def lib() -> ctypes.CDLL:
    """The loaded libflick, its functions declared (loaded once, on first use)."""
    global _lib
    with _lock:
        if _lib is None:
            path = library_path()
            try:
                loaded = ctypes.CDLL(path)
            except OSError as e:
                raise OSError(
                    f"cannot load libflick ({path}): {e}; install libflick or set FLICK_LIBRARY "
                    "to the path of libflick.so"
                ) from e
            for name, (restype, argtypes) in _SIGNATURES.items():
                fn = getattr(loaded, name)
                fn.restype = restype
                fn.argtypes = argtypes
            _lib = loaded
        return _lib


def encode(s: Optional[str]) -> Optional[bytes]:
    return None if s is None else os.fsencode(s)


def string_array(items: Optional[list[str]]) -> Optional[ctypes.Array[c_char_p]]:
    """A NULL-terminated char* array (NULL for None); keep it alive over the call."""
    if items is None:
        return None
    arr = (c_char_p * (len(items) + 1))()
    for i, s in enumerate(items):
        arr[i] = s.encode()
    arr[len(items)] = None
    return arr


def take_string(p: c_void_p) -> str:
    """A library-returned char* as str, freed."""
    if not p.value:
        return ""
    try:
        return ctypes.string_at(p.value).decode("utf-8", errors="replace")
    finally:
        lib().flick_free(p)


def take_bytes(p: c_void_p, n: int) -> bytes:
    if not p.value:
        return b""
    try:
        return ctypes.string_at(p.value, n)
    finally:
        lib().flick_free(p)
