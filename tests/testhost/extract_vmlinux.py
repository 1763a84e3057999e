#!/usr/bin/env python3
"""Extracts the vmlinux ELF from a bzImage.

The x86 boot protocol (Documentation/x86/boot.rst, protocol 2.08+) names the compressed kernel
in the setup header: payload_offset (0x248) and payload_length (0x24c), counted from the start
of the protected-mode code, which follows (setup_sects + 1) * 512 bytes of real-mode setup.
The payload ends with the decompressed size as a little-endian u32 (scripts/Makefile.lib
size_append). Debian's cloud kernel uses LZ4 (legacy frame, decoded by the lz4 command), the
generic amd64 kernel XZ.

  extract_vmlinux.py BZIMAGE OUTPUT
"""

from __future__ import annotations

import gzip
import hashlib
import lzma
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kernel_cache  # noqa: E402


class ExtractError(RuntimeError):
    pass


def _decompress_with(tool: str, data: bytes) -> bytes:
    if not shutil.which(tool):
        raise ExtractError(f"the payload needs the `{tool}` command to decompress; install it")
    proc = subprocess.run([tool, "-dc"], input=data, capture_output=True)
    if proc.returncode != 0 and not proc.stdout:
        raise ExtractError(f"{tool} -dc failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def extract(bzimage: bytes) -> bytes:
    if len(bzimage) < 0x250 or bzimage[0x202:0x206] != b"HdrS":
        raise ExtractError("not a bzImage (no HdrS setup header signature at 0x202)")
    version = struct.unpack_from("<H", bzimage, 0x206)[0]
    if version < 0x208:
        raise ExtractError(f"boot protocol {version >> 8}.{version & 0xff} has no payload fields")
    setup_sects = bzimage[0x1F1] or 4
    offset, length = struct.unpack_from("<II", bzimage, 0x248)
    start = (setup_sects + 1) * 512 + offset
    payload = bzimage[start:start + length]
    if len(payload) != length or length < 8:
        raise ExtractError(f"payload [{start:#x}, +{length:#x}) lies outside the file")
    body, expected = payload[:-4], struct.unpack("<I", payload[-4:])[0]
    if body.startswith(b"\x1f\x8b"):
        vmlinux = gzip.decompress(body)
    elif body.startswith(b"\xfd7zXZ\x00"):
        vmlinux = lzma.LZMADecompressor().decompress(body)
    elif body.startswith(b"\x02\x21\x4c\x18"):  # LZ4 legacy frame
        vmlinux = _decompress_with("lz4", body)
    elif body.startswith(b"\x28\xb5\x2f\xfd"):
        vmlinux = _decompress_with("zstd", body)
    else:
        raise ExtractError(f"unknown payload compression (magic {body[:6].hex()})")
    if len(vmlinux) != expected:
        raise ExtractError(f"decompressed {len(vmlinux)} bytes, the image says {expected}")
    if not vmlinux.startswith(b"\x7fELF"):
        raise ExtractError("the decompressed payload is not an ELF file")
    return vmlinux


def cached_vmlinux(bzimage_path: Path) -> Path:
    """The vmlinux of bzimage_path, extracted once into <cache>/vmlinux/<hash of the bzImage>."""
    data = Path(bzimage_path).read_bytes()
    out = kernel_cache.cache_root() / "vmlinux" / hashlib.sha256(data).hexdigest()[:32]
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.{os.getpid()}")
        tmp.write_bytes(extract(data))
        os.replace(tmp, out)
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    try:
        Path(argv[1]).write_bytes(extract(Path(argv[0]).read_bytes()))
    except (ExtractError, OSError) as e:
        print(f"extract_vmlinux: {argv[0]}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
