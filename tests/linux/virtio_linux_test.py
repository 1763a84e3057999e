#!/usr/bin/env python3
"""Debian's stock cloud kernel in flick's VMM finds all four kinds of virtio device through
ACPI and uses them:
- a pattern written to /dev/vda lands in the host's image file;
- a read-only disk reads and refuses writes;
- a copy-on-write disk takes writes without changing its base file;
- the NIC pings a TAP in a network namespace this test made;
- /dev/hwrng gives entropy; vsock carries data guest->host and host->guest;
- a second initrd archive appended to the first is unpacked too.

  virtio_linux_test.py FLICK VSOCK_TOOL

Runs itself inside the test host when this machine's /dev/kvm cannot run Linux.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

TESTHOST = Path(__file__).resolve().parent.parent / "testhost"
sys.path.insert(0, str(TESTHOST))
import guest_initramfs  # noqa: E402
import kernel_cache  # noqa: E402
import testhost  # noqa: E402

MODULES = ["virtio_mmio", "virtio_blk", "virtio_net", "virtio_rng", "vmw_vsock_virtio_transport"]
PATTERN = "flick-pattern-0123456789abcdef"
RO_CONTENT = b"read-only-content-" + b"x" * 494  # one sector
COW_BASE = b"cow-base-content" + b"y" * 496  # one sector; the guest's writes must not reach it
HOST_NET, GUEST_NET = "10.200.0.1", "10.200.0.2"  # inside this test's own namespace only

GUEST_INIT = f"""#!/bin/sh
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
echo "virtio devices: $(ls /sys/bus/virtio/devices | wc -l)"
echo "appended initrd: $(cat /etc/flick-appended)"
printf '{PATTERN}' | dd of=/dev/vda bs=512 seek=8 conv=notrunc,fsync 2>/dev/null && echo "vda: wrote"
echo "vda: read $(dd if=/dev/vda bs=512 skip=8 count=1 2>/dev/null | head -c {len(PATTERN)})"
echo "vda: serial $(cat /sys/block/vda/serial)"
echo "vdb: read $(dd if=/dev/vdb bs=512 count=1 2>/dev/null | head -c 18)"
echo "vdb: ro=$(cat /sys/block/vdb/ro)"
if printf x | dd of=/dev/vdb conv=fsync 2>/dev/null; then echo "vdb: write succeeded"; else echo "vdb: write refused"; fi
echo "vdc: before $(dd if=/dev/vdc bs=512 count=1 2>/dev/null | head -c 16)"
printf 'cow-guest-write!' | dd of=/dev/vdc bs=512 conv=notrunc,fsync 2>/dev/null
echo 3 > /proc/sys/vm/drop_caches
echo "vdc: after $(dd if=/dev/vdc bs=512 count=1 iflag=direct 2>/dev/null | head -c 16)"
echo "hwrng: $(head -c 64 /dev/hwrng | wc -c) bytes from $(cat /sys/class/misc/hw_random/rng_current)"
ip link set lo up; ip addr add {GUEST_NET}/24 dev eth0; ip link set eth0 up
ping -c 3 -W 5 {HOST_NET} >/dev/null && echo "net: ping ok" || echo "net: ping failed"
echo "vsock guest->host: $(/bin/vsock_tool send 2 1234 hello-from-guest)"
/bin/vsock_tool echo 5000
echo "guest: done"
poweroff -f
"""

EXPECT = [
    "virtio devices: 6",
    "appended initrd: second-archive-ok",
    "vda: wrote",
    f"vda: read {PATTERN}",
    "vda: serial flick-rw",
    "vdb: read read-only-content-",
    "vdb: ro=1",
    "vdb: write refused",
    "vdc: before cow-base-content",
    "vdc: after cow-guest-write!",
    "hwrng: 64 bytes from virtio_rng",
    "net: ping ok",
    "vsock guest->host: host-reply: hello-from-guest",
    "guest: done",
]


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True)


def serve_guest_connections(path: str, stop: threading.Event) -> None:
    """Guest connections to host port 1234 arrive at <uds>_1234: answer one."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    srv.settimeout(1)
    while not stop.is_set():
        try:
            conn, _ = srv.accept()
        except socket.timeout:
            continue
        with conn:
            data = b""
            while chunk := conn.recv(4096):
                data += chunk
            conn.sendall(b"host-reply: " + data)
        break
    srv.close()


def connect_to_guest(uds: str, port: int, message: bytes) -> bytes:
    """Firecracker's host-initiated connection: CONNECT <port>, then data."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(uds)
    s.sendall(f"CONNECT {port}\n".encode())
    ack = b""
    while not ack.endswith(b"\n"):
        chunk = s.recv(1)
        if not chunk:
            raise RuntimeError(f"vsock: connection closed before the ack ({ack!r})")
        ack += chunk
    if not ack.startswith(b"OK "):
        raise RuntimeError(f"vsock: unexpected ack {ack!r}")
    s.sendall(message)
    s.shutdown(socket.SHUT_WR)
    reply = b""
    while chunk := s.recv(4096):
        reply += chunk
    s.close()
    return reply


def inside(flick: str, kernel: str, initrd: str, appended: str) -> int:
    ns = f"flick-virtio-{os.getpid()}"
    work = Path(tempfile.mkdtemp(prefix="flick-virtio-"))
    rw, ro, cow, uds = work / "rw.img", work / "ro.img", work / "cow.img", str(work / "v.sock")
    with open(rw, "wb") as f:
        f.truncate(16 << 20)
    with open(ro, "wb") as f:
        f.write(RO_CONTENT)
        f.truncate(1 << 20)
    with open(cow, "wb") as f:
        f.write(COW_BASE)
        f.truncate(1 << 20)
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "tuntap", "add", "dev", "tap0", "mode", "tap", "vnet_hdr")
        sh("ip", "-n", ns, "addr", "add", f"{HOST_NET}/24", "dev", "tap0")
        sh("ip", "-n", ns, "link", "set", "tap0", "up")
        stop = threading.Event()
        server = threading.Thread(target=serve_guest_connections, args=(uds + "_1234", stop))
        server.start()
        argv = ["ip", "netns", "exec", ns, flick, "vm", "run", "--kernel", kernel, "--initrd", initrd, "--initrd", appended,
                "--cmdline", "console=ttyS0 quiet panic=-1 pci=off", "--memory", "512",
                "--disk", f"{rw},serial=flick-rw", "--disk", f"{ro},ro", "--disk", f"{cow},cow", "--net", "tap=tap0",
                "--vsock", uds, "--timeout", "240"]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        lines: list[str] = []
        host_reply = b""
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\r\n")
            print(line, flush=True)
            lines.append(line)
            if "vsock_tool: listening on 5000" in line:
                host_reply = connect_to_guest(uds, 5000, b"hello-from-host")
        status = proc.wait()
        stop.set()
        server.join()
    finally:
        subprocess.run(["ip", "netns", "delete", ns])

    failures = [e for e in EXPECT if not any(e in l for l in lines)]
    if host_reply != b"echo: hello-from-host":
        failures.append(f"vsock host->guest reply {host_reply!r}")
    with open(rw, "rb") as f:
        f.seek(8 * 512)
        on_disk = f.read(len(PATTERN)).decode(errors="replace")
    if on_disk != PATTERN:
        failures.append(f"host image holds {on_disk!r} where the guest wrote {PATTERN!r}")
    if cow.read_bytes()[:len(COW_BASE)] != COW_BASE:
        failures.append("the copy-on-write disk's base image was modified")
    if status != 0:
        failures.append(f"flick exited {status}")
    for f in failures:
        print(f"FAIL: {f}")
    print("virtio_linux_test: " + ("PASS" if not failures else f"{len(failures)} failure(s)"))
    return 1 if failures else 0


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[1] == "--inside":
        return inside(*argv[2:6])
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    flick, vsock_tool = (str(Path(a).resolve()) for a in argv[1:3])
    kernel = kernel_cache.fetch_kernel("linux-image-cloud-amd64")
    initrd = guest_initramfs.build(kernel.root, MODULES, GUEST_INIT,
                                   extra_files={"bin/vsock_tool": Path(vsock_tool)})
    # A second, uncompressed archive after the first: flick concatenates them (per-boot config
    # rides on a cached base this way).
    extra = guest_initramfs.CpioWriter()
    extra.add_file("etc/flick-appended", b"second-archive-ok\n", 0o644)
    appended = Path.cwd() / "appended.cpio"
    appended.write_bytes(extra.pack())
    cmd = [sys.executable, str(Path(__file__).resolve()), "--inside", flick, str(kernel.vmlinuz),
           str(initrd), str(appended)]
    if testhost.needed():
        return testhost.run(cmd, timeout=780)
    return subprocess.run(cmd).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv))
