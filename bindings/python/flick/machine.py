"""flick.Machine: one machine of a host's state directory, through a handle (flick_machine_*)."""

from __future__ import annotations

import ctypes
import json
import signal as _signal
from ctypes import byref, c_int, c_size_t, c_void_p
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Optional, Sequence, Union

from . import _lib
from ._closing import Closing
from .config import MachineConfig
from .errors import InvalidArgument, NotFound, check

if TYPE_CHECKING:
    from .host import Host

STATES = ("created", "starting", "started", "stopping", "stopped", "failed", "destroying", "destroyed")


def state_code(name: str) -> int:
    """flick_machine_state for a state's name ("started", ...)."""
    try:
        return STATES.index(name)
    except ValueError:
        raise InvalidArgument(f"machine state {name!r}: expected one of {', '.join(STATES)}") from None


def state_name(code: int) -> str:
    name = _lib.lib().flick_machine_state_name(code)
    return name.decode() if name else str(code)


Config = Union[Mapping[str, Any], MachineConfig, str]


def config_json(config: Config) -> bytes:
    """Fly's MachineConfig as the JSON the C ABI reads: a dict, a flick.MachineConfig, or a str
    taken as JSON already."""
    if isinstance(config, str):
        return config.encode()
    if isinstance(config, MachineConfig):
        config = config.to_dict()
    if not isinstance(config, Mapping):
        raise InvalidArgument(f"config: expected a dict in Fly's MachineConfig schema or a flick.MachineConfig, "
                              f"got {type(config).__name__}")
    return json.dumps(dict(config)).encode()


def _ms(seconds: Optional[float], none: int) -> int:
    return none if seconds is None else int(seconds * 1000)


@dataclass(frozen=True)
class ExecResult:
    """A command's outcome in a machine; a command that fails has a non-zero exit_code."""

    exit_code: int  # -1 when a signal ended it
    exit_signal: int
    stdout: bytes
    stderr: bytes
    truncated: bool  # more than 1 MiB of a stream was dropped

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class Machine(Closing):
    """A handle on one machine. The machine outlives the handle: `close()` (or garbage
    collection) frees only the handle. Once the machine is destroyed (here or elsewhere),
    most calls raise flick.NotFound."""

    def __init__(self, host: "Host", handle: Optional[int]) -> None:
        self._host = host  # clone needs it; keeps the Host object alive as long as this
        self._handle = handle
        self._id: Optional[str] = None
        self._lease_nonce: Optional[str] = None  # from acquire_lease or use_lease

    # ---- lifetime ----

    @property
    def handle(self) -> Optional[int]:
        return self._handle

    def close(self) -> None:
        """Frees the handle (again: nothing); the machine goes on."""
        handle, self._handle = self._handle, None
        if handle is not None:
            _lib.lib().flick_machine_free(handle)

    def _h(self) -> int:
        if self._handle is None:
            raise InvalidArgument("flick.Machine: the handle is closed")
        return self._handle

    def __repr__(self) -> str:
        return f"<flick.Machine {self._id or '?'}{' (closed)' if self._handle is None else ''}>"

    # ---- reading ----

    @property
    def id(self) -> str:
        if self._id is None:
            out = c_void_p()
            check(_lib.lib().flick_machine_id(byref(out), self._h()))
            self._id = _lib.take_string(out)
        return self._id

    @property
    def state(self) -> str:
        out = c_int()
        check(_lib.lib().flick_machine_get_state(byref(out), self._h()))
        return state_name(out.value)

    def get(self) -> dict[str, Any]:
        """Fly's Machine object: id, name, state, region, app, instance_id, version, config,
        image_ref, created_at, updated_at, cordoned, events."""
        out = c_void_p()
        check(_lib.lib().flick_machine_get(byref(out), self._h()))
        return dict(json.loads(_lib.take_string(out)))

    @property
    def name(self) -> str:
        return str(self.get().get("name", ""))

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.get().get("config", {}))

    def machine_config(self) -> MachineConfig:
        """The current config as a flick.MachineConfig (fields it does not name in `extra`)."""
        return MachineConfig.from_dict(self.config)

    def events(self) -> Iterator[dict[str, Any]]:
        """Fly's events, newest first: {"id", "type", "status", "source", "timestamp", ...}."""
        out = c_void_p()
        check(_lib.lib().flick_machine_events(byref(out), self._h()))
        return iter(json.loads(_lib.take_string(out)))

    def logs(self) -> bytes:
        """Everything the guest wrote to its console, as kept in the machine's console log."""
        out, n = c_void_p(), c_size_t()
        check(_lib.lib().flick_machine_logs(byref(out), byref(n), self._h()))
        return _lib.take_bytes(out, n.value)

    # ---- lifecycle ----

    def start(self) -> None:
        check(_lib.lib().flick_machine_start(self._h()))

    def stop(self, signal: int = 0, timeout: Optional[float] = None) -> None:
        """Asks the program to end with `signal` (0: the config's), kills it after `timeout`
        seconds (None: the config's), and returns once it is stopped."""
        check(_lib.lib().flick_machine_stop(self._h(), int(signal), _ms(timeout, -1)))

    def signal(self, signo: Union[int, _signal.Signals]) -> None:
        check(_lib.lib().flick_machine_signal(self._h(), int(signo)))

    def wait(self, state: str = "started", timeout: Optional[float] = None) -> None:
        """Waits until the machine is in `state`: flick.Timeout after `timeout` seconds (None:
        no limit), flick.GuestFailure when it failed instead."""
        check(_lib.lib().flick_machine_wait(self._h(), state_code(state), _ms(timeout, -1)))

    def update(self, config: Config, *, skip_launch: bool = False,
               current_version: int = 0) -> None:
        """A new config version (the whole config, no merge); left started unless skip_launch.
        `current_version`: flick.Busy unless the machine is at it."""
        opts = _lib.MachineUpdateOptions(_lib.MACHINE_UPDATE_OPTIONS_VERSION, config_json(config),
                                         1 if skip_launch else 0, current_version)
        check(_lib.lib().flick_machine_update(self._h(), byref(opts)))

    def clone(self, *, name: Optional[str] = None, config: Optional[Config] = None,
              skip_launch: bool = False) -> "Machine":
        """A new machine in this one's app, with its config or `config`."""
        opts = _lib.MachineCloneOptions(_lib.MACHINE_CLONE_OPTIONS_VERSION, _lib.encode(name),
                                        None if config is None else config_json(config), 1 if skip_launch else 0)
        out = c_void_p()
        check(_lib.lib().flick_machine_clone(byref(out), self._host.handle, self._h(), byref(opts)))
        return Machine(self._host, out.value)

    def destroy(self, force: bool = False) -> None:
        """Removes the machine (a running one needs `force`). The handle stays open."""
        check(_lib.lib().flick_machine_destroy(self._h(), 1 if force else 0))

    def cordon(self) -> None:
        check(_lib.lib().flick_machine_cordon(self._h()))

    def uncordon(self) -> None:
        check(_lib.lib().flick_machine_uncordon(self._h()))

    # ---- exec ----

    def exec(self, argv: Sequence[str], *, timeout: Optional[float] = 30.0, stdin: Optional[bytes] = None,
             env: Optional[Mapping[str, str]] = None, user: Optional[str] = None,
             workdir: Optional[str] = None) -> ExecResult:
        """Runs a command in the started machine and waits for it (flick.Timeout after
        `timeout` seconds; None: no limit)."""
        if isinstance(argv, (str, bytes)) or not argv:
            raise InvalidArgument("exec: argv must be a non-empty list of strings")
        c_argv = _lib.string_array(list(argv))
        c_env = _lib.string_array([f"{k}={v}" for k, v in env.items()]) if env else None
        opts = _lib.ExecOptions(_lib.EXEC_OPTIONS_VERSION)
        opts.argv = ctypes.cast(c_argv, ctypes.POINTER(ctypes.c_char_p))
        stdin_buf = ctypes.create_string_buffer(stdin, len(stdin)) if stdin else None
        if stdin_buf is not None and stdin is not None:
            opts.stdin_data = ctypes.cast(stdin_buf, c_void_p)
            opts.stdin_len = len(stdin)
        opts.timeout_ms = _ms(timeout, 0)
        if c_env is not None:
            opts.env = ctypes.cast(c_env, ctypes.POINTER(ctypes.c_char_p))
        opts.user = _lib.encode(user)
        opts.workdir = _lib.encode(workdir)
        result = _lib.ExecResult()
        check(_lib.lib().flick_machine_exec(byref(result), self._h(), byref(opts)))
        try:
            return ExecResult(
                exit_code=result.exit_code,
                exit_signal=result.exit_signal,
                stdout=ctypes.string_at(result.stdout_data, result.stdout_len) if result.stdout_data else b"",
                stderr=ctypes.string_at(result.stderr_data, result.stderr_len) if result.stderr_data else b"",
                truncated=bool(result.truncated),
            )
        finally:
            _lib.lib().flick_exec_result_free(byref(result))

    # ---- metadata ----

    def metadata(self) -> dict[str, str]:
        out = c_void_p()
        check(_lib.lib().flick_machine_metadata(byref(out), self._h()))
        return dict(json.loads(_lib.take_string(out)))

    def get_metadata(self, key: str, default: Optional[str] = None) -> Optional[str]:
        """The value of `key`, or `default` when the machine has no such key."""
        out = c_void_p()
        try:
            check(_lib.lib().flick_machine_metadata_get(byref(out), self._h(), key.encode()))
        except NotFound:
            if self.state == "destroyed":
                raise
            return default
        return _lib.take_string(out)

    def set_metadata(self, key: str, value: str) -> None:
        check(_lib.lib().flick_machine_metadata_set(self._h(), key.encode(), value.encode()))

    def delete_metadata(self, key: str) -> None:
        check(_lib.lib().flick_machine_metadata_delete(self._h(), key.encode()))

    # ---- leases ----

    def acquire_lease(self, ttl: int = 30, description: Optional[str] = None) -> dict[str, Any]:
        """Fly's lease for `ttl` seconds: {"nonce", "expires_at", "owner", "description",
        "version"}; this handle carries the nonce. flick.LeaseHeld while another holds it."""
        out = c_void_p()
        check(_lib.lib().flick_machine_lease_acquire(byref(out), self._h(), ttl, _lib.encode(description)))
        lease = dict(json.loads(_lib.take_string(out)))
        self._lease_nonce = lease.get("nonce")
        return lease

    def lease(self) -> Optional[dict[str, Any]]:
        """The live lease, or None."""
        out = c_void_p()
        try:
            check(_lib.lib().flick_machine_lease_get(byref(out), self._h()))
        except NotFound:
            if self.state == "destroyed":
                raise
            return None
        return dict(json.loads(_lib.take_string(out)))

    def release_lease(self, nonce: Optional[str] = None) -> None:
        """Releases the lease (`nonce` None: the one this handle acquired or was given)."""
        nonce = nonce if nonce is not None else self._lease_nonce
        if nonce is None:
            raise InvalidArgument("release_lease: no nonce given and this handle holds no lease")
        check(_lib.lib().flick_machine_lease_release(self._h(), nonce.encode()))
        if nonce == self._lease_nonce:
            self._lease_nonce = None

    def use_lease(self, nonce: Optional[str]) -> None:
        """Makes this handle carry `nonce` (None: none), as another handle's acquire does."""
        check(_lib.lib().flick_machine_set_lease_nonce(self._h(), _lib.encode(nonce)))
        self._lease_nonce = nonce
