"""A Linux guest that reports what it sees, and a runner that boots it and reads the report.

The guest initramfs (for Debian's cloud kernel) runs REPORT_INIT: it prints its uptime at init,
the CPU count, the kernel command line, the ACPI tables, the first CPU's flags and the clock
source, one `@@report KEY VALUE` line each, then powers off. With `report_dmesg` on the command
line it also prints the kernel's log (after the uptime was taken) as `@@dmesg ` lines. With
`flick_boot_timer` on the command line it first writes the boot-timer magic to flick's
boot-timer MMIO page (lib/vmm/layout.h kBootTimerMmio) so flick prints its boot-time reading.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import guest_initramfs  # noqa: E402
import kernel_cache  # noqa: E402

GUEST_KERNEL_PACKAGE = "linux-image-cloud-amd64"
BOOT_TIMER_MMIO = 0xC0000000  # layout::kBootTimerMmio
BOOT_TIMER_MAGIC = 123        # layout::kBootTimerMagic

REPORT_INIT = f"""#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
if grep -qw flick_boot_timer /proc/cmdline; then
  devmem {BOOT_TIMER_MMIO:#x} 8 {BOOT_TIMER_MAGIC}
fi
echo "@@report uptime $(cut -d' ' -f1 /proc/uptime)"
echo "@@report cpus $(grep -c '^processor' /proc/cpuinfo)"
echo "@@report cmdline $(cat /proc/cmdline)"
echo "@@report acpi $(ls /sys/firmware/acpi/tables 2>/dev/null | tr '\\n' ' ')"
echo "@@report flags $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2)"
echo "@@report clocksource $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
if grep -qw report_dmesg /proc/cmdline; then
  dmesg | sed 's/^/@@dmesg /'
fi
echo "@@report done"
poweroff -f
"""


def build_report_initramfs() -> tuple[kernel_cache.Kernel, Path]:
    """The cloud kernel and the report initramfs for it (both cached)."""
    kernel = kernel_cache.fetch_kernel(GUEST_KERNEL_PACKAGE)
    return kernel, guest_initramfs.build(kernel.root, [], REPORT_INIT)


@dataclasses.dataclass
class BootResult:
    status: int | None           # the VMM's exit status (None: killed after the timeout)
    report: dict[str, str]       # the guest's @@report lines
    wall_to_init: float | None   # s from starting the VMM to the guest's first report line
    wall_total: float            # s from starting the VMM to its exit
    output: str                  # everything the VMM printed (serial console, stderr)

    @property
    def guest_uptime_at_init(self) -> float | None:
        return float(self.report["uptime"]) if "uptime" in self.report else None

    def problems(self, cpus: int, cmdline_words: list[str],
                 cpu_flags: tuple[str, ...] = ()) -> list[str]:
        """What is wrong with this boot, compared with what the guest should have seen."""
        p = []
        if self.status != 0:
            p.append(f"exit status {self.status} (expected 0)")
        if "done" not in self.report:
            p.append("the guest's report is incomplete")
        if self.report.get("cpus") != str(cpus):
            p.append(f"guest saw {self.report.get('cpus')} CPUs, expected {cpus}")
        seen = self.report.get("cmdline", "").split()
        missing = [w for w in cmdline_words if w not in seen]
        if missing:
            p.append(f"guest command line {seen} lacks {missing}")
        seen_flags = self.report.get("flags", "").split()
        if missing_flags := [f for f in cpu_flags if f not in seen_flags]:
            p.append(f"the guest's CPU lacks {missing_flags}")
        tables = self.report.get("acpi", "").split()
        for t in ("FACP", "DSDT", "APIC"):
            if t not in tables:
                p.append(f"ACPI table {t} missing (guest saw {tables})")
        return p


def boot(argv: list[str], timeout: float = 60) -> BootResult:
    """Runs a VMM command line whose guest runs REPORT_INIT; collects the report and timings."""
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    report: dict[str, str] = {}
    lines: list[str] = []
    first_report: list[float] = []

    def pump() -> None:
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\r\n")
            lines.append(line)
            if "@@report " in line:
                if not first_report:
                    first_report.append(time.monotonic() - t0)
                _, _, rest = line.partition("@@report ")
                key, _, value = rest.partition(" ")
                report[key] = value.strip()

    reader = threading.Thread(target=pump)
    reader.start()
    try:
        status: int | None = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        status = None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join()
    return BootResult(status, report, first_report[0] if first_report else None,
                      time.monotonic() - t0, "\n".join(lines))


def qemu_microvm_argv(kernel: Path, initrd: Path, cmdline: str, cpus: int,
                      memory_mib: int = 512) -> list[str]:
    """QEMU 7.2's microvm with ACPI (MADT for the CPUs, DSDT for devices), on /dev/kvm.

    Its FADT does not say "no CMOS RTC" (IAPC_BOOT_ARCH bit 5) the way flick's does, so the
    kernel's rtc_cmos probe polls the RTC's update-in-progress bit, which took 9-13 s of a
    15 s boot inside the test host (with rtc=on as well); skipping that probe keeps the
    comparison about the VMMs."""
    cmdline += " initcall_blacklist=cmos_init"
    return ["qemu-system-x86_64", "-M", "microvm,acpi=on,x-option-roms=off,rtc=off",
            "-accel", "kvm", "-cpu", "host", "-smp", str(cpus), "-m", str(memory_mib),
            "-nodefaults", "-no-user-config", "-nographic", "-serial", "stdio", "-no-reboot",
            "-kernel", str(kernel), "-initrd", str(initrd), "-append", cmdline]


def describe(name: str, r: BootResult) -> str:
    def s(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f} s"
    return (f"{name}: status {r.status}, guest uptime at init {s(r.guest_uptime_at_init)}, "
            f"wall to init {s(r.wall_to_init)}, wall total {s(r.wall_total)}")

