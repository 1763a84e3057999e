#!/usr/bin/env python3
"""Builds a small busybox OCI image (image-spec v1.1 layout) from the host's busybox-static.

No network: the one layer holds /bin/busybox, a link per applet, a minimal /etc and the usual
top-level directories. Output is byte-deterministic (sorted entries, owner and mtime fixed,
gzip mtime 0; SOURCE_DATE_EPOCH sets the timestamps). An existing layout in OUT_DIR gains the
new tag (replacing an old manifest of that tag), so several variants can share one layout.
Prints the reference oci:OUT_DIR:TAG. FLICK_BUSYBOX overrides the busybox binary's path.
--pad MIB adds /pad, MIB MiB of zeros: an image whose content has a known size.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import hashlib
import io
import json
import os
import platform
import re
import subprocess
import sys
import tarfile
from pathlib import Path

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
REF_NAME = "org.opencontainers.image.ref.name"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")  # the Docker tag grammar
PASSWD = ("root:x:0:0:root:/root:/bin/sh\n"
          "app:x:1000:1000:app:/home/app:/bin/sh\n"
          "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
GROUP = "root:x:0:\nusers:x:100:app\napp:x:1000:\nnogroup:x:65534:\n"
# name -> (mode, uid); parents not listed here are created 0755 root.
DIRS = {"etc": (0o755, 0), "proc": (0o755, 0), "sys": (0o755, 0), "dev": (0o755, 0),
        "run": (0o755, 0), "root": (0o700, 0), "tmp": (0o1777, 0), "var": (0o755, 0),
        "home": (0o755, 0), "home/app": (0o755, 1000), "srv": (0o755, 0)}


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 1, instead of argparse's usage dump
        raise UsageError(message)


def key_value(text: str) -> tuple[str, str]:
    key, eq, value = text.partition("=")
    if not key or not eq:
        raise argparse.ArgumentTypeError(f"expected K=V, got {text!r}")
    return key, value


def string_array(text: str) -> list[str]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not JSON ({e}): {text!r}") from None
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise argparse.ArgumentTypeError(f"expected a JSON array of strings, got {text!r}")
    return value


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = Parser(description="Build a busybox OCI image layout from busybox-static, offline.")
    ap.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    ap.add_argument("--tag", default="latest")
    ap.add_argument("--env", type=key_value, action="append", default=[], metavar="K=V")
    ap.add_argument("--workdir")
    ap.add_argument("--user")
    ap.add_argument("--entrypoint", type=string_array, metavar="JSON_ARRAY")
    ap.add_argument("--cmd", type=string_array, default=["sh"], metavar="JSON_ARRAY")
    ap.add_argument("--label", type=key_value, action="append", default=[], metavar="K=V")
    ap.add_argument("--pad", type=int, default=0, metavar="MIB", help="add /pad: MIB MiB of zeros")
    args = ap.parse_args(argv)
    if not TAG_RE.fullmatch(args.tag):
        raise UsageError(f"bad tag {args.tag!r}: use letters, digits, '_', '.', '-' (max 128)")
    if args.workdir is not None and not args.workdir.startswith("/"):
        raise UsageError(f"--workdir must be absolute, got {args.workdir!r}")
    if not 0 <= args.pad <= 4096:
        raise UsageError(f"--pad takes 0 to 4096 MiB, got {args.pad}")
    if args.user == "":
        raise UsageError("--user must not be empty")
    args.out_dir = args.out_dir.resolve()
    if ":" in str(args.out_dir):  # oci:DIR:TAG splits at the first ':'
        raise UsageError(f"OUT_DIR {args.out_dir} must not contain ':'")
    return args


def source_epoch() -> int:
    text = os.environ.get("SOURCE_DATE_EPOCH", "0")
    if not text.isdigit():
        raise UsageError(f"SOURCE_DATE_EPOCH must be a non-negative integer, got {text!r}")
    return int(text)


def build_layer(busybox: Path, mtime: int, pad_mib: int = 0) -> bytes:
    """The uncompressed layer tar."""
    try:
        binary = busybox.read_bytes()
        listing = subprocess.run([str(busybox), "--list-full"], check=True, capture_output=True,
                                 text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise UsageError(f"cannot use {busybox} ({e}): install busybox-static: "
                         "scripts/install-deps.sh") from None
    entries: dict[str, tuple[tarfile.TarInfo, bytes | None]] = {}

    def add(name: str, kind: bytes, mode: int, uid: int = 0, data: bytes | None = None,
            link: str = "") -> None:
        parent = os.path.dirname(name)
        if parent and parent not in entries:
            add(parent, tarfile.DIRTYPE, *DIRS.get(parent, (0o755, 0)))
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.uid, info.gid, info.mtime = kind, mode, uid, uid, mtime
        info.linkname, info.size = link, len(data or b"")
        entries[name] = (info, data)

    for name, (mode, uid) in DIRS.items():
        add(name, tarfile.DIRTYPE, mode, uid)
    add("bin/busybox", tarfile.REGTYPE, 0o755, data=binary)
    for applet in listing.split():
        applet = applet.strip("/")
        if applet != "bin/busybox":
            link = os.path.relpath("bin/busybox", os.path.dirname(applet) or ".")
            add(applet, tarfile.SYMTYPE, 0o777, link=link)
    add("etc/passwd", tarfile.REGTYPE, 0o644, data=PASSWD.encode())
    add("etc/group", tarfile.REGTYPE, 0o644, data=GROUP.encode())
    if pad_mib:
        add("pad", tarfile.REGTYPE, 0o644, data=bytes(pad_mib << 20))

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(entries):  # a parent sorts before its children
            info, data = entries[name]
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def canonical_json(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def write_blob(out_dir: Path, data: bytes, media_type: str) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    path = out_dir / "blobs" / "sha256" / digest
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{digest}.tmp")
        tmp.write_bytes(data)
        tmp.rename(path)
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}


def load_index(out_dir: Path) -> dict:
    if not out_dir.exists() or not any(out_dir.iterdir()):
        return {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": []}
    try:
        layout = json.loads((out_dir / "oci-layout").read_text())
        index = json.loads((out_dir / "index.json").read_text())
        if layout.get("imageLayoutVersion") != "1.0.0" or not isinstance(index["manifests"], list):
            raise ValueError("unsupported oci-layout version or index without manifests")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UsageError(f"{out_dir} is neither empty nor an OCI image layout: {e}") from None
    return index


def build(args: argparse.Namespace) -> str:
    epoch = source_epoch()
    busybox = Path(os.environ.get("FLICK_BUSYBOX", "/bin/busybox"))
    if not busybox.is_file():
        raise UsageError(f"{busybox} not found: install busybox-static: scripts/install-deps.sh")
    index = load_index(args.out_dir)
    layer = build_layer(busybox, epoch, args.pad)
    compressed = gzip.compress(layer, compresslevel=9, mtime=0)

    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    created = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc)
    created = created.strftime("%Y-%m-%dT%H:%M:%SZ")
    env = dict([key_value(DEFAULT_PATH)])
    env.update(args.env)  # a later --env of the same name wins, PATH included
    config = {"Env": [f"{k}={v}" for k, v in env.items()], "Cmd": args.cmd}
    for key, value in (("Entrypoint", args.entrypoint), ("WorkingDir", args.workdir),
                       ("User", args.user), ("Labels", dict(args.label) or None)):
        if value is not None:
            config[key] = value
    image_config = {
        "created": created, "architecture": arch, "os": "linux", "config": config,
        "rootfs": {"type": "layers",
                   "diff_ids": [f"sha256:{hashlib.sha256(layer).hexdigest()}"]},
        "history": [{"created": created, "created_by": "scripts/busybox-image.py"}],
    }
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    manifest = {
        "schemaVersion": 2, "mediaType": MANIFEST_TYPE,
        "config": write_blob(out, canonical_json(image_config),
                             "application/vnd.oci.image.config.v1+json"),
        "layers": [write_blob(out, compressed, "application/vnd.oci.image.layer.v1.tar+gzip")],
    }
    descriptor = write_blob(out, canonical_json(manifest), MANIFEST_TYPE)
    descriptor["annotations"] = {REF_NAME: args.tag}
    descriptor["platform"] = {"architecture": arch, "os": "linux"}
    index["manifests"] = [m for m in index["manifests"]
                          if m.get("annotations", {}).get(REF_NAME) != args.tag] + [descriptor]
    (out / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    tmp = out / ".index.json.tmp"
    tmp.write_bytes(canonical_json(index))
    tmp.rename(out / "index.json")
    return f"oci:{out}:{args.tag}"


def main(argv: list[str]) -> int:
    try:
        print(build(parse_args(argv)))
    except (UsageError, OSError) as e:
        print(f"busybox-image.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
