"""Debian kernel packages fetched with apt and unpacked into flick's cache, never installed.

A metapackage (linux-image-amd64, linux-image-cloud-amd64) is resolved to the concrete
linux-image-6.1.0-N-<flavour> package, downloaded with `apt-get download` and unpacked with
`dpkg-deb -x` into <cache>/kernels/<package>_<version>/. Concurrent callers serialise on a lock
file; the unpacked tree appears atomically (unpack into a temporary folder, then rename).
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path


class KernelFetchError(RuntimeError):
    pass


def cache_root() -> Path:
    """flick's cache: $FLICK_CACHE_DIR, else ${XDG_CACHE_HOME:-~/.cache}/flick."""
    if os.environ.get("FLICK_CACHE_DIR"):
        return Path(os.environ["FLICK_CACHE_DIR"])
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "flick"


@dataclasses.dataclass(frozen=True)
class Kernel:
    package: str       # concrete package, e.g. linux-image-6.1.0-56-cloud-amd64
    version: str       # Debian package version, e.g. 6.1.192-2
    root: Path         # the unpacked package
    release: str       # uname -r, e.g. 6.1.0-56-cloud-amd64

    @property
    def vmlinuz(self) -> Path:
        return self.root / "boot" / f"vmlinuz-{self.release}"

    @property
    def modules_dir(self) -> Path:
        return self.root / "lib" / "modules" / self.release


def _run(cmd: list[str], **kw) -> str:
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, **kw)
    except FileNotFoundError as e:
        raise KernelFetchError(f"cannot run {cmd[0]}: {e} (is this a Debian system?)") from e
    if proc.returncode != 0:
        raise KernelFetchError(
            f"`{' '.join(cmd)}` failed with status {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def _apt_lists_present() -> bool:
    lists = Path("/var/lib/apt/lists")
    return lists.is_dir() and any(p.name.endswith(("Packages", "Packages.lz4", "Packages.xz",
                                                    "Packages.gz")) for p in lists.iterdir())


def _candidate_version(package: str) -> str | None:
    out = _run(["apt-cache", "policy", package])
    m = re.search(r"^\s*Candidate:\s*(\S+)", out, re.M)
    return None if not m or m.group(1) == "(none)" else m.group(1)


def resolve(metapackage: str) -> tuple[str, str]:
    """Returns (concrete linux-image package, its candidate version).

    apt-cache takes seconds on the full lists, so the answer is remembered until apt's lists
    change."""
    memo = cache_root() / "kernels" / f".{metapackage}.resolved"
    lists = Path("/var/lib/apt/lists")
    try:
        newest_list = max((p.stat().st_mtime for p in lists.iterdir()), default=0.0)
        if memo.stat().st_mtime > newest_list:
            package, version = memo.read_text().split()
            return package, version
    except (OSError, ValueError):
        pass
    package, version = _resolve_with_apt(metapackage)
    memo.parent.mkdir(parents=True, exist_ok=True)
    tmp = memo.with_suffix(f".{os.getpid()}")
    tmp.write_text(f"{package} {version}\n")
    os.replace(tmp, memo)
    return package, version


def _resolve_with_apt(metapackage: str) -> tuple[str, str]:
    if not _apt_lists_present() or _candidate_version(metapackage) is None:
        _run(["apt-get", "update", "-qq"])
    if _candidate_version(metapackage) is None:
        raise KernelFetchError(f"apt knows no package {metapackage!r}")
    concrete = metapackage
    if not re.match(r"linux-image-\d", metapackage):
        out = _run(["apt-cache", "depends", metapackage])
        deps = re.findall(r"^\s*Depends:\s*(linux-image-\d\S*)", out, re.M)
        if not deps:
            raise KernelFetchError(f"{metapackage} depends on no linux-image-<version> package")
        concrete = deps[0]
    version = _candidate_version(concrete)
    if version is None:
        raise KernelFetchError(f"apt has no candidate version of {concrete}")
    return concrete, version


def _find_release(root: Path) -> str:
    releases = sorted(p.name for p in (root / "lib" / "modules").iterdir() if p.is_dir())
    if len(releases) != 1:
        raise KernelFetchError(f"expected one kernel release under {root}/lib/modules, got {releases}")
    return releases[0]


def fetch_kernel(metapackage: str) -> Kernel:
    """Downloads and unpacks the kernel `metapackage` points to, unless it is cached already."""
    package, version = resolve(metapackage)
    kernels = cache_root() / "kernels"
    kernels.mkdir(parents=True, exist_ok=True)
    dest = kernels / f"{package}_{version}"
    if not dest.is_dir():
        with open(kernels / f".{package}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not dest.is_dir():  # another process may have finished while we waited
                _download_and_unpack(package, version, kernels, dest)
    kernel = Kernel(package, version, dest, _find_release(dest))
    if not kernel.vmlinuz.is_file():
        raise KernelFetchError(f"{package} {version} has no {kernel.vmlinuz}")
    return kernel


def _download_and_unpack(package: str, version: str, kernels: Path, dest: Path) -> None:
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=kernels) as tmp:
        # apt's _apt sandbox user cannot write into root's cache; the download is a plain file.
        os.chmod(tmp, 0o755)
        _run(["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root",
              f"{package}={version}"], cwd=tmp)
        debs = list(Path(tmp).glob("*.deb"))
        if len(debs) != 1:
            raise KernelFetchError(f"apt-get download {package}={version} left {debs} in {tmp}")
        unpacked = Path(tmp) / "root"
        _run(["dpkg-deb", "-x", str(debs[0]), str(unpacked)])
        # The package leaves modules.dep to its postinst; generate it in the unpacked tree.
        release = _find_release(unpacked)
        if not shutil.which("depmod"):
            raise KernelFetchError("depmod not found: install kmod (scripts/install-deps.sh)")
        _run(["depmod", "-b", str(unpacked), release])
        os.rename(unpacked, dest)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: testhost.py fetch-kernel PACKAGE   (e.g. linux-image-cloud-amd64)")
        return 2
    try:
        k = fetch_kernel(argv[0])
    except KernelFetchError as e:
        print(f"fetch-kernel: {e}", file=__import__("sys").stderr)
        return 1
    print(f"vmlinuz={k.vmlinuz}")
    print(f"modules={k.modules_dir}")
    print(f"release={k.release}")
    return 0


if __name__ == "__main__":
    import sys
    sys.exit(main(sys.argv[1:]))
