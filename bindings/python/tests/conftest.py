"""Fixtures for the flick binding's tests. No KVM: machines are made with skip_launch from a
busybox OCI layout built by scripts/busybox-image.py.

Environment (ctest sets it, bindings/python/CMakeLists.txt):
  FLICK_LIBRARY            libflick.so to load (else the soname, libflick.so.0)
  FLICK_TEST_GUEST_KERNEL  the host's default kernel (create needs one; nothing boots it)
  FLICK_SOURCE_DIR         the source tree (for scripts/busybox-image.py; default: found from here)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

import flick

SOURCE_DIR = Path(os.environ.get("FLICK_SOURCE_DIR") or Path(__file__).resolve().parents[3])


@pytest.fixture(scope="session")
def busybox_layout(tmp_path_factory: pytest.TempPathFactory) -> str:
    """oci:DIR:latest, a local busybox image."""
    out = tmp_path_factory.mktemp("image") / "layout"
    subprocess.run([sys.executable, str(SOURCE_DIR / "scripts" / "busybox-image.py"), str(out)],
                   check=True, capture_output=True)
    return f"oci:{out}:latest"


@pytest.fixture
def guest_kernel() -> str:
    kernel = os.environ.get("FLICK_TEST_GUEST_KERNEL")
    if not kernel:
        pytest.fail("FLICK_TEST_GUEST_KERNEL is not set (ctest sets it: the PVH test guest)")
    return kernel


@pytest.fixture
def host_options(tmp_path: Path, guest_kernel: str) -> dict[str, object]:
    """A host whose starts fail before a VM exists: no KVM device, no flick-vmm."""
    return {
        "state_dir": tmp_path / "state",
        "cache_dir": tmp_path / "cache",
        "run_dir": tmp_path / "run",
        "kernel": guest_kernel,
        "kvm_device": "/nonexistent/kvm",
        "vmm_program": "/nonexistent/flick-vmm",
        "networking": "none",
    }


@pytest.fixture
def host(host_options: dict[str, object]) -> Iterator[flick.Host]:
    with flick.Host(**host_options) as h:  # type: ignore[arg-type]
        yield h
