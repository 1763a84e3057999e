"""The library loads and answers; errors map to exceptions; misuse raises, never crashes."""

from __future__ import annotations

import ctypes
import gc
import os

import pytest

import flick
from flick import _lib
from flick.errors import error_for


def test_library_loads_from_flick_library_or_soname() -> None:
    assert _lib.library_path() == (os.environ.get("FLICK_LIBRARY") or "libflick.so.0")
    major, minor, patch = flick.library_version()
    assert (major, minor, patch) >= (0, 1, 0)
    assert flick.version() == f"{major}.{minor}.{patch}"


def test_the_package_is_the_installed_one_when_ctest_installed_it() -> None:
    venv = os.environ.get("FLICK_EXPECT_INSTALLED")
    if venv:  # ctest's run: the package from the venv, not the source tree
        assert os.path.realpath(flick.__file__).startswith(os.path.realpath(venv))


def test_has_feature() -> None:
    assert flick.has_feature("machines")
    assert flick.has_feature("images")
    assert not flick.has_feature("no-such-feature")
    assert not flick.has_feature("")


def test_every_code_maps_to_its_exception() -> None:
    expected = {
        -1: flick.InvalidArgument, -2: flick.NotFound, -9: flick.Timeout, -10: flick.Busy,
        -12: flick.Cancelled, -15: flick.AlreadyExists, -16: flick.LeaseHeld, -100: flick.InternalError,
    }
    for code, cls in expected.items():
        e = error_for(code, "m", flick.ErrorClass.MACHINE, 5)
        assert type(e) is cls
        assert isinstance(e, flick.Error)
        assert e.code == code and e.errno == 5 and e.error_class == flick.ErrorClass.MACHINE
        assert str(e) == "m"
    for code in flick.Code:
        if code != flick.Code.OK:
            assert type(error_for(code, "m")) is not flick.Error, code.name
    unknown = error_for(-99, "newer")
    assert type(unknown) is flick.Error and unknown.code == -99
    assert isinstance(flick.InvalidArgument("x"), ValueError)
    assert isinstance(flick.NotFound("x"), LookupError)


def test_a_bad_config_field_raises_invalid_argument_naming_it(host: flick.Host, busybox_layout: str) -> None:
    with pytest.raises(flick.InvalidArgument) as e:
        host.create_machine({"image": busybox_layout, "guest": {"cpus": -3}}, skip_launch=True)
    assert "guest.cpus" in str(e.value)
    assert e.value.code == flick.Code.EINVAL
    assert e.value.error_class == flick.ErrorClass.INVALID_ARGUMENT
    with pytest.raises(flick.Malformed):
        host.create_machine("{not json", skip_launch=True)
    with pytest.raises(flick.InvalidArgument):
        host.create_machine(["not", "a", "dict"], skip_launch=True)  # type: ignore[arg-type]


def test_a_closed_host_raises_when_used_again(host_options: dict[str, object]) -> None:
    h = flick.Host(**host_options)  # type: ignore[arg-type]
    h.close()
    assert h.closed
    h.close()  # again: nothing
    with pytest.raises(flick.InvalidArgument) as e:
        h.images()
    assert e.value.message
    with pytest.raises(flick.InvalidArgument):
        h.machines()
    with pytest.raises(flick.InvalidArgument):
        h.create_machine({"image": "busybox"}, skip_launch=True)


def test_bad_arguments_are_refused_before_the_c_call(host: flick.Host) -> None:
    with pytest.raises(flick.InvalidArgument):
        host.machines(state="sleeping")
    with pytest.raises(flick.InvalidArgument):
        host.pull("busybox", policy="sometimes")
    with pytest.raises(flick.InvalidArgument):
        flick.Host(networking="carrier-pigeon")


def test_a_missing_machine_raises_not_found(host: flick.Host) -> None:
    with pytest.raises(flick.NotFound) as e:
        host.machine("no-such-machine")
    assert e.value.code == flick.Code.ENOTFOUND


def test_stale_handles_in_raw_calls_are_refused() -> None:
    # A token that was never made: the library looks it up in its table, never dereferences it.
    state = ctypes.c_int()
    assert _lib.lib().flick_machine_get_state(ctypes.byref(state), 0x7FFF_0000_1234) == flick.Code.EINVAL
    assert _lib.lib().flick_host_close(0xDEAD_BEEF) == flick.Code.EINVAL
    gc.collect()
