"""Busybox initramfs builder for a Debian kernel (guest kernels and the test host alike).

The archive holds a static busybox with a link for every applet, the requested modules of one
kernel plus everything they depend on (from modules.dep, loaded in dependency order by a
generated /init that then execs the caller's init script as /init.user), extra files, and
/dev/console. It is a newc cpio (gzip) written directly, so it is byte-for-byte deterministic
(mtime 0, owner root, sorted) and cached under <cache>/initramfs/<sha256 of the inputs>.cpio.gz.

Usage as a script:
  guest_initramfs.py --kernel-dir DIR --init FILE [--module NAME]... [--file SRC:DEST]... -o OUT
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import lzma
import os
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kernel_cache  # noqa: E402

FORMAT_VERSION = b"flick-initramfs-1"  # bump when the layout below changes
BUSYBOX = Path("/bin/busybox")


class InitramfsError(RuntimeError):
    pass


def _module_name(path: str) -> str:
    name = os.path.basename(path)
    for suffix in (".xz", ".zst", ".gz"):
        name = name.removesuffix(suffix)
    return name.removesuffix(".ko").replace("-", "_")


def module_load_order(modules_dir: Path, wanted: list[str]) -> list[str]:
    """Paths (relative to modules_dir) of `wanted` and their dependencies, each after its deps.

    Names use the kernel's spelling, '-' and '_' alike. A module built into the kernel is
    skipped; a name the kernel knows nothing of is an error."""
    dep_file = modules_dir / "modules.dep"
    try:
        lines = dep_file.read_text().splitlines()
    except OSError as e:
        raise InitramfsError(f"cannot read {dep_file}: {e}") from e
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in lines:
        path, _, rest = line.partition(":")
        deps[path] = rest.split()
        by_name[_module_name(path)] = path
    builtin_file = modules_dir / "modules.builtin"
    builtin = {_module_name(l) for l in builtin_file.read_text().split()} \
        if builtin_file.exists() else set()

    order: list[str] = []
    seen: set[str] = set()

    def visit(path: str, chain: tuple[str, ...]) -> None:
        if path in seen:
            return
        if path in chain:
            raise InitramfsError(f"module dependency cycle: {' -> '.join(chain + (path,))}")
        for d in deps.get(path, []):
            visit(d, chain + (path,))
        seen.add(path)
        order.append(path)

    for name in wanted:
        key = name.replace("-", "_")
        if key in by_name:
            visit(by_name[key], ())
        elif key not in builtin:
            raise InitramfsError(f"kernel {modules_dir.name} has no module {name!r} "
                                 f"(neither in modules.dep nor built in)")
    return order


def _read_module(path: Path) -> bytes:
    """Module bytes, decompressed: busybox insmod only loads plain .ko files."""
    data = path.read_bytes()
    if path.suffix == ".xz":
        return lzma.decompress(data)
    if path.suffix == ".gz":
        return gzip.decompress(data)
    if path.suffix == ".zst":
        return subprocess.run(["zstd", "-dc", str(path)], check=True, capture_output=True).stdout
    return data


class CpioWriter:
    """newc format (see the kernel's Documentation/driver-api/early-userspace/buffer-format.rst)."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[int, bytes, int]] = {}  # name -> (mode, data, rdev)

    def add_dir(self, name: str) -> None:
        if not name.strip("/"):
            return
        parts = name.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            self.entries.setdefault("/".join(parts[:i]), (0o040755, b"", 0))

    def add_file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        name = name.strip("/")
        self.add_dir(os.path.dirname(name))
        self.entries[name] = (0o100000 | mode, data, 0)

    def add_symlink(self, name: str, target: str) -> None:
        name = name.strip("/")
        self.add_dir(os.path.dirname(name))
        self.entries.setdefault(name, (0o120777, target.encode(), 0))

    def add_chardev(self, name: str, major: int, minor: int, mode: int = 0o600) -> None:
        name = name.strip("/")
        self.add_dir(os.path.dirname(name))
        self.entries[name] = (0o020000 | mode, b"", (major << 8) | minor)

    def pack(self) -> bytes:
        out = bytearray()
        for ino, name in enumerate(sorted(self.entries) + ["TRAILER!!!"], start=1):
            mode, data, rdev = self.entries.get(name, (0, b"", 0))
            nlink = 2 if mode & 0o040000 else 1
            fields = (ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev >> 8, rdev & 0xFF,
                      len(name) + 1, 0)
            out += b"070701" + b"".join(b"%08X" % f for f in fields)
            out += name.encode() + b"\0"
            out += b"\0" * (-len(out) % 4)
            out += data
            out += b"\0" * (-len(out) % 4)
        return bytes(out)


def _busybox_applets() -> list[str]:
    if not BUSYBOX.is_file():
        raise InitramfsError(f"{BUSYBOX} not found: install busybox-static")
    out = subprocess.run([str(BUSYBOX), "--list-full"], check=True, capture_output=True,
                         text=True).stdout
    return sorted(out.split())


def _boot_script(module_paths: list[str], module_args: dict[str, str]) -> str:
    lines = ["#!/bin/sh", "# Generated: load the modules in dependency order, then the caller's init."]
    for p in module_paths:
        args = module_args.get(_module_name(p), "")
        lines.append(f"insmod /lib/modules/{p} {args}".rstrip()
                     + f" || echo 'initramfs: insmod {p} failed' >&2")
    lines.append("exec /init.user \"$@\"")
    return "\n".join(lines) + "\n"


def build(kernel_dir: Path, modules: list[str], init: str | bytes,
          extra_files: dict[str, Path | bytes] | None = None,
          output: Path | None = None) -> Path:
    """Builds (or reuses) the initramfs and returns its path.

    kernel_dir: an unpacked kernel package (the root holding lib/modules/<release>) or its
      lib/modules/<release> folder. modules: names, optionally with insmod arguments
      ("kvm_amd nested=0"). init: the busybox sh script run as /init.user. extra_files: archive
      path -> host file or bytes (executable when the host file is). output: where to put a copy;
      otherwise the cached file itself is returned."""
    modules_dir = _modules_dir(Path(kernel_dir))
    names = [m.split(None, 1)[0] for m in modules]
    module_args = {n.replace("-", "_"): (m.split(None, 1) + [""])[1] for n, m in zip(names, modules)}
    order = module_load_order(modules_dir, names)

    cpio = CpioWriter()
    for d in ("dev", "proc", "sys", "tmp", "run", "mnt", "root", "etc"):
        cpio.add_dir(d)
    cpio.add_chardev("dev/console", 5, 1)
    cpio.add_chardev("dev/null", 1, 3, 0o666)
    cpio.add_file("bin/busybox", BUSYBOX.read_bytes(), 0o755)
    for applet in _busybox_applets():
        if applet.strip("/") != "bin/busybox":
            depth = applet.strip("/").count("/")
            cpio.add_symlink(applet, "../" * depth + "bin/busybox")
    for p in order:
        cpio.add_file(f"lib/modules/{p}", _read_module(modules_dir / p))
    cpio.add_file("init", _boot_script(order, module_args).encode(), 0o755)
    cpio.add_file("init.user", init.encode() if isinstance(init, str) else init, 0o755)
    for dest, src in sorted((extra_files or {}).items()):
        if isinstance(src, bytes):
            cpio.add_file(dest, src, 0o644)
        else:
            src = Path(src)
            cpio.add_file(dest, src.read_bytes(), 0o755 if os.access(src, os.X_OK) else 0o644)

    archive = cpio.pack()
    digest = hashlib.sha256(FORMAT_VERSION + archive).hexdigest()[:32]
    cached = kernel_cache.cache_root() / "initramfs" / f"{digest}.cpio.gz"
    if not cached.exists():
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f".{cached.name}.{os.getpid()}")
        tmp.write_bytes(_gzip(archive))
        os.replace(tmp, cached)
    if output is None:
        return cached
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cached, output)
    return output


def _gzip(data: bytes) -> bytes:
    # gzip with no name and mtime 0, so equal inputs give equal bytes.
    c = zlib.compressobj(6, zlib.DEFLATED, 31)
    return c.compress(data) + c.flush()


def _modules_dir(kernel_dir: Path) -> Path:
    if (kernel_dir / "modules.dep").exists():
        return kernel_dir
    found = sorted((kernel_dir / "lib" / "modules").glob("*/modules.dep"))
    if len(found) != 1:
        raise InitramfsError(f"{kernel_dir} holds no single lib/modules/<release>/modules.dep")
    return found[0].parent


def main() -> int:
    ap = argparse.ArgumentParser(description="Build a busybox initramfs for a Debian kernel.")
    ap.add_argument("--kernel-dir", type=Path, required=True,
                    help="unpacked kernel package (see testhost.py fetch-kernel)")
    ap.add_argument("--module", action="append", default=[], help="module to load at boot")
    ap.add_argument("--init", type=Path, required=True, help="busybox sh script run as init")
    ap.add_argument("--file", action="append", default=[], metavar="SRC:DEST",
                    help="extra host file to put at DEST in the archive")
    ap.add_argument("-o", "--output", type=Path)
    a = ap.parse_args()
    extra = {}
    for spec in a.file:
        src, _, dest = spec.partition(":")
        extra[dest or os.path.basename(src)] = Path(src)
    try:
        print(build(a.kernel_dir, a.module, a.init.read_bytes(), extra, a.output))
    except (InitramfsError, OSError) as e:
        print(f"guest_initramfs: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
