"""Image pulls: a local layout, the progress callback, a callback that raises or stops."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

import flick


def test_pull_list_rootfs_and_remove_a_local_layout(host: flick.Host, busybox_layout: str) -> None:
    calls: list[tuple[int, int]] = []
    pulled = host.pull(busybox_layout, progress=lambda d, t: calls.append((d, t)))
    assert pulled["reference"] == busybox_layout
    assert pulled["image_digest"].startswith("sha256:")
    assert calls == []  # local transports do not report progress
    rootfs = host.rootfs(busybox_layout)
    assert Path(rootfs).is_file()
    images = host.images()
    assert [i["image_digest"] for i in images] == [pulled["image_digest"]]
    files, freed = host.remove_image(busybox_layout)
    assert files > 0 and freed > 0
    with pytest.raises(flick.NotFound) as e:
        host.remove_image(busybox_layout)
    assert e.value.error_class == flick.ErrorClass.IMAGE
    with pytest.raises(flick.Error):
        host.pull(busybox_layout.replace("layout", "nowhere"), policy="never")
    host.prune_images()


@pytest.fixture
def registry(tmp_path: Path, busybox_layout: str) -> Iterator[str]:
    """Debian's docker-registry on loopback holding busybox:latest: host:port."""
    if not shutil.which("docker-registry") or not shutil.which("skopeo"):
        pytest.fail("docker-registry and skopeo are needed (scripts/install-deps.sh installs them)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        addr = f"127.0.0.1:{s.getsockname()[1]}"
    (tmp_path / "registry.yml").write_text(
        f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path}/registry\n"
        f"http:\n  addr: {addr}\n")
    proc = subprocess.Popen(["docker-registry", "serve", str(tmp_path / "registry.yml")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            r = subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false", busybox_layout,
                                f"docker://{addr}/busybox:latest"], capture_output=True)
            if r.returncode == 0:
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"pushing to {addr}: {r.stderr.decode()}")
        yield addr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


@pytest.fixture
def pull_host(tmp_path: Path, registry: str) -> Iterator[flick.Host]:
    with flick.Host(tmp_path / "pull-state", cache_dir=tmp_path / "pull-cache", networking="none",
                    insecure_registries=[registry]) as h:
        yield h


class Boom(Exception):
    pass


def test_a_progress_callback_that_raises_stops_the_pull_and_its_exception_comes_out(
        pull_host: flick.Host, registry: str) -> None:
    ref = f"{registry}/busybox:latest"
    calls: list[int] = []

    def progress(done: int, total: int) -> None:
        calls.append(threading.get_ident())
        raise Boom(f"stop at {done}/{total}")

    with pytest.raises(Boom, match="stop at"):
        pull_host.pull(ref, progress=progress)
    assert calls == [threading.get_ident()]  # once, on the calling thread

    # Returning False stops it too: flick.Cancelled from the C call.
    with pytest.raises(flick.Cancelled) as e:
        pull_host.pull(ref, policy="always", progress=lambda d, t: False)
    assert e.value.error_class == flick.ErrorClass.CALLBACK

    # The process and the host are fine: a pull that reports to the end succeeds.
    seen: list[tuple[int, int]] = []
    pulled = pull_host.pull(ref, policy="always", progress=lambda d, t: seen.append((d, t)))
    assert pulled["image_digest"].startswith("sha256:")
    assert seen and seen[-1][1] > 0


def test_keyboard_interrupt_in_a_callback_is_reraised(pull_host: flick.Host, registry: str) -> None:
    def progress(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pull_host.pull(f"{registry}/busybox:latest", policy="always", progress=progress)
    assert os.getpid()  # still here
