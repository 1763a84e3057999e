"""flick.Host: a state directory, an image cache and a default kernel (flick_host_*,
flick_image_*, flick_app_*, flick_volume_* and the machine calls that take a host)."""

from __future__ import annotations

import ctypes
import json
import os
from ctypes import byref, c_size_t, c_uint64, c_void_p
from typing import Any, Callable, Iterable, Mapping, Optional, Union

from . import _lib
from ._closing import Closing
from .errors import InvalidArgument, check
from .machine import Config, Machine, config_json, state_code

PathLike = Union[str, "os.PathLike[str]"]
# A pull's progress: called with (done_bytes, total_bytes); returning False stops the pull
# (flick.Cancelled), raising stops it and the exception comes out of the pull.
Progress = Callable[[int, int], Optional[bool]]

_NETWORKING = {"automatic": 0, "required": 1, "none": 2}
_POLICY = {"missing": 0, "always": 1, "never": 2}


def _path(p: Optional[PathLike]) -> Optional[bytes]:
    return None if p is None else os.fsencode(p)


def _json(p: c_void_p) -> Any:
    return json.loads(_lib.take_string(p))


class _PullCall:
    """Pull options with a progress trampoline that never lets a Python exception reach C:
    the exception is kept, the C call is told to stop, and `finish` raises it."""

    def __init__(self, policy: str, progress: Optional[Progress]) -> None:
        if policy not in _POLICY:
            raise InvalidArgument(f"pull policy {policy!r}: expected one of {', '.join(_POLICY)}")
        self.options = _lib.PullOptions(_lib.PULL_OPTIONS_VERSION, _POLICY[policy])
        self.raised: Optional[BaseException] = None
        self._progress = progress
        if progress is not None:
            self._trampoline = _lib.PULL_PROGRESS_FN(self._call)  # kept alive over the call
            self.options.progress = self._trampoline

    def _call(self, _userdata: Optional[int], done: int, total: int) -> int:
        if self.raised is not None:
            return 1
        try:
            assert self._progress is not None
            return 1 if self._progress(done, total) is False else 0
        except BaseException as e:  # noqa: B036 - KeyboardInterrupt too: C must not see it
            self.raised = e
            return 1

    def finish(self, rc: int) -> None:
        if self.raised is not None:
            e, self.raised = self.raised, None
            raise e
        check(rc)


class Host(Closing):
    """This computer as a place to run machines. Every argument may be left out for flick's
    default (flick(1)). Use it as a context manager, or call `close()`; machines keep running
    after it closes."""

    def __init__(
        self,
        state_dir: Optional[PathLike] = None,
        *,
        cache_dir: Optional[PathLike] = None,
        run_dir: Optional[PathLike] = None,
        kernel: Optional[PathLike] = None,
        kernel_modules: Optional[PathLike] = None,
        kvm_device: Optional[PathLike] = None,
        vmm_program: Optional[PathLike] = None,
        networking: str = "automatic",
        default_registry: Optional[str] = None,
        insecure_registries: Optional[Iterable[str]] = None,
    ) -> None:
        self._handle: Optional[int] = None
        self._closed = False
        if networking not in _NETWORKING:
            raise InvalidArgument(f"networking {networking!r}: expected one of {', '.join(_NETWORKING)}")
        lib = _lib.lib()
        opts = _lib.HostOptions()
        check(lib.flick_host_options_init(byref(opts), _lib.HOST_OPTIONS_VERSION))
        opts.state_dir = _path(state_dir)
        opts.cache_dir = _path(cache_dir)
        opts.run_dir = _path(run_dir)
        opts.kernel = _path(kernel)
        opts.kernel_modules = _path(kernel_modules)
        opts.kvm_device = _path(kvm_device)
        opts.vmm_program = _path(vmm_program)
        opts.networking = _NETWORKING[networking]
        opts.default_registry = _lib.encode(default_registry)
        registries = _lib.string_array(list(insecure_registries) if insecure_registries is not None else None)
        if registries is not None:
            opts.insecure_registries = ctypes.cast(registries, ctypes.POINTER(ctypes.c_char_p))
        out = c_void_p()
        check(lib.flick_host_open(byref(out), byref(opts)))
        self._handle = out.value

    # ---- lifetime ----

    @property
    def handle(self) -> Optional[int]:
        """The C handle (a token, not a pointer); after close, the stale token, which the
        library refuses with flick.InvalidArgument."""
        return self._handle

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Closes the handle (again: nothing). Machines made through it stay usable."""
        if self._closed or self._handle is None:
            return
        self._closed = True
        check(_lib.lib().flick_host_close(self._handle))

    # ---- images ----

    def pull(self, ref: str, *, policy: str = "missing", progress: Optional[Progress] = None) -> dict[str, Any]:
        """Pulls `ref` ("busybox", "localhost:5000/app:1", "oci:DIR:TAG", "oci-archive:FILE")
        into the cache. `policy`: "missing", "always" or "never". `progress(done, total)` is
        called during registry pulls (local transports do not report)."""
        call = _PullCall(policy, progress)
        out = c_void_p()
        rc = _lib.lib().flick_image_pull(byref(out), self._handle, ref.encode(), byref(call.options))
        call.finish(rc)
        return _json(out)

    def rootfs(self, ref: str, *, policy: str = "missing", progress: Optional[Progress] = None) -> str:
        """Pulls as `policy` says and builds (once) the image's ext4 root filesystem: its path
        in the cache (not to be written to)."""
        call = _PullCall(policy, progress)
        out = c_void_p()
        rc = _lib.lib().flick_image_rootfs(byref(out), self._handle, ref.encode(), byref(call.options))
        call.finish(rc)
        return _lib.take_string(out)

    def images(self) -> list[dict[str, Any]]:
        """The cached images: [{"reference", "image_digest", "blob_bytes", "rootfs"}]."""
        out = c_void_p()
        check(_lib.lib().flick_image_list(byref(out), self._handle))
        return list(_json(out))

    def prune_images(self) -> tuple[int, int]:
        """Removes what no reference uses: (files removed, bytes freed)."""
        files, freed = c_uint64(), c_uint64()
        check(_lib.lib().flick_image_prune(byref(files), byref(freed), self._handle))
        return files.value, freed.value

    def remove_image(self, ref: str) -> tuple[int, int]:
        """Forgets `ref` (flick.NotFound if not cached): (files removed, bytes freed)."""
        files, freed = c_uint64(), c_uint64()
        check(_lib.lib().flick_image_rm(byref(files), byref(freed), self._handle, ref.encode()))
        return files.value, freed.value

    # ---- machines ----

    def create_machine(
        self,
        config: Config,
        *,
        app: Optional[str] = None,
        name: Optional[str] = None,
        region: Optional[str] = None,
        skip_launch: bool = False,
    ) -> Machine:
        """Makes a machine from Fly's MachineConfig (a dict, e.g. {"image": "busybox"}, or a
        flick.MachineConfig), and
        starts it unless `skip_launch`. A bad field raises flick.InvalidArgument naming it."""
        text = config_json(config)
        opts = _lib.MachineCreateOptions(_lib.MACHINE_CREATE_OPTIONS_VERSION, text, _lib.encode(app),
                                         _lib.encode(name), _lib.encode(region), 1 if skip_launch else 0)
        out = c_void_p()
        check(_lib.lib().flick_machine_create(byref(out), self._handle, byref(opts)))
        return Machine(self, out.value)

    def machine(self, id_or_name: str, *, app: Optional[str] = None) -> Machine:
        """A handle on an existing machine, by id or name (flick.NotFound when none)."""
        out = c_void_p()
        check(_lib.lib().flick_machine_open(byref(out), self._handle, id_or_name.encode(), _lib.encode(app)))
        return Machine(self, out.value)

    def machines(
        self,
        *,
        app: Optional[str] = None,
        state: Union[None, str, Iterable[str]] = None,
        metadata: Optional[Mapping[str, str]] = None,
        include_deleted: bool = False,
    ) -> list[dict[str, Any]]:
        """Fly's Machine objects (dicts) of the machines that match: `app`, a state or states
        (default: every state but destroyed), metadata that must all match."""
        f = _lib.MachineFilter(_lib.MACHINE_FILTER_VERSION)
        f.app = _lib.encode(app)
        keep: list[object] = []
        if state is not None:
            names = [state] if isinstance(state, str) else list(state)
            states = (ctypes.c_int * max(len(names), 1))(*[state_code(s) for s in names])
            keep.append(states)
            f.states = ctypes.cast(states, ctypes.POINTER(ctypes.c_int))
            f.state_count = c_size_t(len(names))
        if metadata:
            pairs: list[str] = []
            for k, v in metadata.items():
                pairs += [k, v]
            arr = _lib.string_array(pairs)
            keep.append(arr)
            f.metadata = ctypes.cast(arr, ctypes.POINTER(ctypes.c_char_p))
        f.include_deleted = 1 if include_deleted else 0
        out = c_void_p()
        check(_lib.lib().flick_machine_list(byref(out), self._handle, byref(f)))
        return list(_json(out))

    # ---- apps ----

    def create_app(self, name: str, *, org: Optional[str] = None) -> dict[str, Any]:
        out = c_void_p()
        check(_lib.lib().flick_app_create(byref(out), self._handle, name.encode(), _lib.encode(org)))
        return dict(_json(out))

    def apps(self) -> list[dict[str, Any]]:
        out = c_void_p()
        check(_lib.lib().flick_app_list(byref(out), self._handle))
        return list(_json(out))

    def destroy_app(self, name: str, *, force: bool = False) -> None:
        """flick.Busy while it has machines or volumes, unless `force` destroys them first."""
        check(_lib.lib().flick_app_destroy(self._handle, name.encode(), 1 if force else 0))

    # ---- volumes ----

    def create_volume(self, name: str, size_gb: int, *, app: Optional[str] = None) -> dict[str, Any]:
        out = c_void_p()
        check(_lib.lib().flick_volume_create(byref(out), self._handle, name.encode(), _lib.encode(app),
                                             c_uint64(size_gb)))
        return dict(_json(out))

    def volumes(self, *, app: Optional[str] = None) -> list[dict[str, Any]]:
        out = c_void_p()
        check(_lib.lib().flick_volume_list(byref(out), self._handle, _lib.encode(app)))
        return list(_json(out))

    def extend_volume(self, id_or_name: str, size_gb: int, *, app: Optional[str] = None) -> dict[str, Any]:
        out = c_void_p()
        check(_lib.lib().flick_volume_extend(byref(out), self._handle, id_or_name.encode(), _lib.encode(app),
                                             c_uint64(size_gb)))
        return dict(_json(out))

    def destroy_volume(self, id_or_name: str, *, app: Optional[str] = None) -> None:
        check(_lib.lib().flick_volume_destroy(self._handle, id_or_name.encode(), _lib.encode(app)))
