#!/usr/bin/env python3
"""flick-init as PID 1 of Debian's stock cloud kernel in flick's VMM (docs/init-protocol.md).

Three boots, each with a busybox ext4 root filesystem, the base initramfs (flick-init as /init
plus modules) and a per-start archive holding /flick/config.json, both given as --initrd:
  1. sh -c 'echo hi; ...; exit 3' as user nobody with env and cwd: console output, `started`
     then `exited` exit_code 3; uid/gid/cwd/env/HOME as configured; the boot timer written.
  2. root, with network (TAP in a network namespace), hostname, dns, hosts and a data volume;
     then `trap '' INT; sleep 1000` and a stop command: `exited` signal 9 after the timeout.
  3. a missing entrypoint: `error` exit_code 127 with the reason, and no `started`.
Every boot must end with the guest powering off (flick exits 0).

  init_linux_test.py FLICK FLICK_INIT
"""

from __future__ import annotations

import json
import os
import shutil
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

MODULES = ["virtio_mmio", "virtio_blk", "virtio_net", "vmw_vsock_virtio_transport", "ext4"]
PORT = 10000
HOST_NET, GUEST_NET = "10.201.0.1", "10.201.0.2"
STOP_TIMEOUT_MS = 2000
PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\nusers:x:100:nobody\nnogroup:x:65534:\n"


def base_initramfs(kernel: kernel_cache.Kernel, flick_init: Path, out: Path) -> None:
    order = guest_initramfs.module_load_order(kernel.modules_dir, MODULES)
    cpio = guest_initramfs.CpioWriter()
    cpio.add_file("init", flick_init.read_bytes(), 0o755)
    cpio.add_chardev("dev/console", 5, 1)
    for p in order:
        cpio.add_file(f"lib/modules/{kernel.release}/{p}",
                      guest_initramfs._read_module(kernel.modules_dir / p))
    cpio.add_file("flick/modules", "".join(p + "\n" for p in order).encode())
    out.write_bytes(cpio.pack())


def config_archive(config: dict, out: Path) -> None:
    cpio = guest_initramfs.CpioWriter()
    cpio.add_file("flick/config.json", json.dumps(config, indent=1).encode())
    out.write_bytes(cpio.pack())


def ext4_image(src: Path, out: Path, size: str) -> None:
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(src), str(out), size], check=True)


def busybox_rootfs(work: Path) -> Path:
    root = work / "rootfs"
    (root / "bin").mkdir(parents=True)
    shutil.copy(guest_initramfs.BUSYBOX, root / "bin" / "busybox")
    for applet in guest_initramfs._busybox_applets():
        rel = applet.strip("/")
        if rel == "bin/busybox":
            continue
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        if not (root / rel).exists():
            os.symlink("../" * rel.count("/") + "bin/busybox", root / rel)
    for d in ("etc", "proc", "sys", "dev", "run", "root"):
        (root / d).mkdir(exist_ok=True)
    (root / "tmp").mkdir(mode=0o1777)
    os.chmod(root / "tmp", 0o1777)
    (root / "etc" / "passwd").write_text(PASSWD)
    (root / "etc" / "group").write_text(GROUP)
    image = work / "rootfs.img"
    ext4_image(root, image, "64M")
    return image


def config(argv: list[str], **extra) -> dict:
    c = {"root": {"device": "/dev/vda", "fstype": "ext4", "options": "rw"},
         "process": {"argv": argv, "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "cwd": "/", "user": ""},
         "vsock": {"port": PORT}}
    for k, v in extra.items():
        if k == "process":
            c["process"].update(v)
        else:
            c[k] = v
    return c


class Boot:
    """One machine run: console lines, events (with arrival times), flick's exit status."""

    def __init__(self, name: str, work: Path) -> None:
        self.name, self.work = name, work / name
        self.work.mkdir()
        self.lines: list[str] = []
        self.events: list[tuple[float, dict]] = []
        self.stop_sent_at = 0.0
        self.ready = threading.Event()
        self.status = -1

    def _listen(self, srv: socket.socket, stop_on: str | None) -> None:
        srv.settimeout(120)
        try:
            conn, _ = srv.accept()
        except socket.timeout:
            return
        conn.settimeout(120)
        buf = b""
        with conn:
            while True:
                try:
                    chunk = conn.recv(4096)
                except socket.timeout:
                    break
                if not chunk:
                    break
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    ev = json.loads(line)
                    self.events.append((time.monotonic(), ev))
                    if stop_on and ev.get("event") == "started":
                        self.ready.wait(60)
                        self.stop_sent_at = time.monotonic()
                        conn.sendall(b'{"command":"stop"}\n')

    def run(self, flick: str, kernel: str, base: str, cfg: dict, disks: list[str],
            netns: str | None = None, stop_on: str | None = None) -> None:
        per_start = self.work / "config.cpio"
        config_archive(cfg, per_start)
        uds = str(self.work / "v.sock")
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(f"{uds}_{PORT}")
        srv.listen(1)
        listener = threading.Thread(target=self._listen, args=(srv, stop_on))
        listener.start()
        argv = [flick, "vm", "run", "--kernel", kernel, "--initrd", base, "--initrd", str(per_start),
                "--cmdline", "console=ttyS0 quiet panic=-1 pci=off", "--memory", "256",
                "--vsock", uds, "--timeout", "120", "--boot-time"]
        for d in disks:
            argv += ["--disk", d]
        if netns:
            argv = ["ip", "netns", "exec", netns] + argv + ["--net", "tap=tap0"]
        print(f"=== boot {self.name}", flush=True)
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\r\n")
            print(line, flush=True)
            self.lines.append(line)
            if stop_on and stop_on in line:
                self.ready.set()
        self.status = proc.wait()
        self.ready.set()
        listener.join()
        srv.close()

    def kinds(self) -> list[str]:
        return [e["event"] for _, e in self.events]

    def event(self, kind: str) -> dict | None:
        return next((e for _, e in self.events if e["event"] == kind), None)

    def console_has(self, text: str) -> bool:
        return any(text in l for l in self.lines)


def inside(flick: str, kernel: str, base: str, rootfs: str, data: str) -> int:
    work = Path(tempfile.mkdtemp(prefix="flick-init-"))
    failures: list[str] = []

    def expect(boot: Boot, ok: bool, what: str) -> None:
        if not ok:
            failures.append(f"{boot.name}: {what}")

    def fresh_root(boot: Boot) -> str:
        dest = boot.work / "rootfs.img"
        subprocess.run(["cp", "--sparse=always", rootfs, str(dest)], check=True)
        return str(dest)

    # 1. exit code, console, user/env/cwd.
    b = Boot("exit-code", work)
    b.run(flick, kernel, base, config(
        ["/bin/sh", "-c", 'echo hi; echo "ids=$(id -u):$(id -g):$(id -G) cwd=$(pwd) foo=$FOO home=$HOME"; exit 3'],
        process={"env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "FOO=bar baz"], "cwd": "/tmp", "user": "nobody"}),
        [fresh_root(b)])
    expect(b, b.console_has("hi"), "no 'hi' on the console")
    expect(b, b.console_has("ids=65534:65534:65534 100 cwd=/tmp foo=bar baz home=/nonexistent"),
           "user, groups, cwd, env or HOME not as configured")
    expect(b, b.kinds() == ["started", "exited"], f"events {b.kinds()}")
    expect(b, (b.event("started") or {}).get("pid", 0) > 1, "started without a pid")
    expect(b, b.event("exited") == {"event": "exited", "exit_code": 3}, f"exited {b.event('exited')}")
    expect(b, b.console_has("us to the boot timer"), "the boot timer was not written before exec")
    expect(b, b.status == 0, f"flick exited {b.status}")

    # 2. network, etc files, a volume; then stop on a program that ignores the stop signal.
    ns = f"flick-init-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        for cmd in (["link", "set", "lo", "up"], ["tuntap", "add", "dev", "tap0", "mode", "tap", "vnet_hdr"],
                    ["addr", "add", f"{HOST_NET}/24", "dev", "tap0"], ["link", "set", "tap0", "up"]):
            subprocess.run(["ip", "-n", ns] + cmd, check=True)
        b = Boot("stop", work)
        script = ("ping -c 1 -W 5 " + HOST_NET + " >/dev/null && echo net=ok; "
                  "echo host=$(hostname) mtu=$(cat /sys/class/net/eth0/mtu); "
                  "echo route=$(ip route | grep default); cat /etc/resolv.conf /etc/hosts; "
                  "echo data=$(cat /data/marker); trap '' INT; echo ready; sleep 1000")
        b.run(flick, kernel, base, config(
            ["/bin/sh", "-c", script], hostname="m-test",
            mounts=[{"device": "/dev/vdb", "path": "/data", "fstype": "ext4", "options": "ro"}],
            network={"interface": "eth0", "address": f"{GUEST_NET}/24", "gateway": HOST_NET,
                     "mtu": 1400, "dns": ["10.201.0.53"]},
            hosts=[{"address": GUEST_NET, "names": ["m-test", "alias"]}],
            stop={"signal": 2, "timeout_ms": STOP_TIMEOUT_MS}),
            [fresh_root(b), data + ",ro"], netns=ns, stop_on="ready")
    finally:
        subprocess.run(["ip", "netns", "delete", ns])
    expect(b, b.console_has("net=ok"), "no ping through the configured interface")
    expect(b, b.console_has("host=m-test mtu=1400"), "hostname or MTU not set")
    expect(b, b.console_has(f"route=default via {HOST_NET} dev eth0"), "no default route")
    expect(b, b.console_has("nameserver 10.201.0.53"), "no /etc/resolv.conf")
    expect(b, b.console_has(f"{GUEST_NET} m-test alias"), "hosts entry missing from /etc/hosts")
    expect(b, b.console_has("data=flick-volume"), "volume not mounted at /data")
    expect(b, b.kinds() == ["started", "exited"], f"events {b.kinds()}")
    expect(b, b.event("exited") == {"event": "exited", "signal": 9}, f"exited {b.event('exited')}")
    exited_at = next((t for t, e in b.events if e["event"] == "exited"), 0.0)
    waited = exited_at - b.stop_sent_at
    expect(b, b.stop_sent_at > 0 and STOP_TIMEOUT_MS / 1000 - 0.2 <= waited < 30,
           f"SIGKILL {waited:.2f} s after the stop command, timeout {STOP_TIMEOUT_MS} ms")
    expect(b, b.status == 0, f"flick exited {b.status}")

    # 3. missing entrypoint.
    b = Boot("missing", work)
    b.run(flick, kernel, base, config(["/no/such/app", "arg"]), [fresh_root(b)])
    err = b.event("error") or {}
    expect(b, b.kinds() == ["error"], f"events {b.kinds()}")
    expect(b, err.get("exit_code") == 127, f"error {err}")
    expect(b, err.get("message") == "exec /no/such/app: No such file or directory", f"error {err}")
    expect(b, b.console_has("flick-init: {\"event\":\"error\""), "error not printed on the console")
    expect(b, b.status == 0, f"flick exited {b.status}")

    shutil.rmtree(work, ignore_errors=True)
    for f in failures:
        print(f"FAIL: {f}")
    print("init_linux_test: " + ("PASS" if not failures else f"{len(failures)} failure(s)"))
    return 1 if failures else 0


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[1] == "--inside":
        return inside(*argv[2:7])
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    flick, flick_init = (str(Path(a).resolve()) for a in argv[1:3])
    kernel = kernel_cache.fetch_kernel("linux-image-cloud-amd64")
    work = Path.cwd() / "init_linux_test.work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    base = work / "base.cpio"
    base_initramfs(kernel, Path(flick_init), base)
    rootfs = busybox_rootfs(work)
    (work / "data").mkdir()
    (work / "data" / "marker").write_text("flick-volume\n")
    data = work / "data.img"
    ext4_image(work / "data", data, "8M")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--inside", flick, str(kernel.vmlinuz),
           str(base), str(rootfs), str(data)]
    if testhost.needed():
        return testhost.run(cmd, timeout=780)
    return subprocess.run(cmd).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv))
