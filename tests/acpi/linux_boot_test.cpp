// Boots Debian's cloud kernel (the default guest kernel) with nothing but these ACPI tables
// to describe the machine, and checks that it finds its CPUs in the MADT and its
// virtio-mmio devices in the DSDT.
//
// The machine is QEMU's microvm under TCG, with QEMU's own ACPI off and our tables loaded at
// 0xe0000, where Linux finds the RSDP by scanning. The tables describe microvm's layout
// (virtio-mmio transports at 0xfeb00000, 512 bytes apart, GSI 5 up), not flick's.
// Needs qemu-system-x86, busybox-static and cpio (scripts/install-deps.sh). The kernel is
// FLICK_TEST_KERNEL=/path/to/boot/vmlinuz-<release> in an unpacked kernel package, else
// Debian's cloud kernel, fetched into flick's cache as machines fetch it.
#include "machine/guest_kernel.h"
#include "vmm/acpi/tables.h"

#include "support/command.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <signal.h>
#include <sys/types.h>

namespace flick::vmm::acpi {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kMicrovmVirtioBase = 0xfeb00000;
constexpr uint64_t kMicrovmVirtioStride = 512;
constexpr uint32_t kMicrovmVirtioTransports = 8;
constexpr uint32_t kMicrovmVirtioFirstGsi = 5;

using flick::testing::CommandResult;
CommandResult run(const std::string& command) { return flick::testing::run_command(command); }

// Runs QEMU (which writes its pid to `pidfile`) and stops it once `marker` has been printed:
// the guest's own reboot path under TCG (ACPI reset, then seconds of i8042 polling, then a
// triple fault) takes far longer than the checks.
std::string run_guest(const std::string& command, const fs::path& pidfile,
                      const std::string& marker) {
  std::string out;
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  if (!p) return out;
  char line[4096];
  while (fgets(line, sizeof line, p)) {
    out += line;
    if (out.find(marker) == std::string::npos) continue;
    std::ifstream in(pidfile);
    pid_t pid = 0;
    if (in >> pid && pid > 0) kill(pid, SIGTERM);
    break;
  }
  while (fgets(line, sizeof line, p)) out += line;
  pclose(p);
  return out;
}

// The bzImage and its lib/modules/<release>/kernel folder.
struct Kernel {
  fs::path vmlinuz, modules;
};

Result<Kernel> find_kernel() {
  if (const char* k = std::getenv("FLICK_TEST_KERNEL"); k && *k) {
    fs::path vmlinuz = k;
    std::string release = vmlinuz.filename().string().substr(std::string("vmlinuz-").size());
    return Kernel{vmlinuz, vmlinuz.parent_path().parent_path() / "lib/modules" / release / "kernel"};
  }
  auto k = flick::machine::fetch_guest_kernel(flick::machine::default_cache_dir());
  if (!k.ok()) return k.error();
  if (!k->modules_dir) return make_error(Errc::not_found, "the cloud kernel has no modules");
  return Kernel{k->vmlinuz, *k->modules_dir / "kernel"};
}

constexpr char kInit[] = R"sh(#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc p /proc; mount -t sysfs s /sys; mount -t devtmpfs d /dev
echo "@@ cpus $(grep -c ^processor /proc/cpuinfo)"
for d in /sys/bus/acpi/devices/*; do echo "@@ acpi $(basename $d)"; done
for m in virtio_ring virtio virtio_mmio virtio_blk; do insmod /m/$m.ko; done
sleep 1
for d in /sys/bus/virtio/devices/*; do echo "@@ virtio $(cat $d/device)"; done
[ -b /dev/vda ] && echo "@@ vda $(cat /sys/block/vda/size)"
grep -E 'virtio0|ttyS0' /proc/interrupts | sed 's/^/@@ irq /'
echo "@@ done"
exec sleep 600
)sh";

TEST(LinuxBoot, StockCloudKernelFindsCpusAndVirtioMmioDevicesFromTheTables) {
  auto found = find_kernel();
  ASSERT_TRUE(found.ok()) << found.error().describe();
  const fs::path kernel = found->vmlinuz, modules = found->modules;
  ASSERT_TRUE(fs::is_regular_file(kernel)) << kernel;
  for (const char* tool : {"qemu-system-x86_64", "busybox", "cpio", "gzip"}) {
    ASSERT_EQ(run(std::string("command -v ") + tool).status, 0)
        << tool << " missing (scripts/install-deps.sh installs it)";
  }

  char tmpl[] = "/tmp/flick-acpi-boot-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  fs::path dir = tmpl;
  fs::create_directories(dir / "root/bin");
  fs::create_directories(dir / "root/m");
  for (const char* d : {"proc", "sys", "dev"}) fs::create_directories(dir / "root" / d);
  std::string busybox = run("command -v busybox").output;
  busybox.erase(busybox.find_last_not_of('\n') + 1);
  fs::copy_file(busybox, dir / "root/bin/busybox");
  for (const char* m : {"drivers/virtio/virtio_ring", "drivers/virtio/virtio",
                        "drivers/virtio/virtio_mmio", "drivers/block/virtio_blk"}) {
    fs::path ko = modules / (std::string(m) + ".ko");
    ASSERT_TRUE(fs::exists(ko)) << ko;
    fs::copy_file(ko, dir / "root/m" / ko.filename());
  }
  {
    std::ofstream init(dir / "root/init");
    init << kInit;
  }
  fs::permissions(dir / "root/init", fs::perms::owner_all);
  auto pack = run("cd " + (dir / "root").string() +
                  " && find . | cpio -o -H newc --quiet | gzip > ../initrd.gz && truncate -s 8M ../disk.img");
  ASSERT_EQ(pack.status, 0) << pack.output;

  AcpiConfig config;
  config.cpus = 2;
  for (uint32_t i = 0; i < kMicrovmVirtioTransports; ++i)
    config.mmio_devices.push_back({kMicrovmVirtioBase + i * kMicrovmVirtioStride,
                                   kMicrovmVirtioStride, kMicrovmVirtioFirstGsi + i});
  auto image = build_tables(config);
  ASSERT_TRUE(image.ok()) << image.error().message;
  ASSERT_EQ(image->base, 0xe0000u);
  {
    std::ofstream out(dir / "acpi.bin", std::ios::binary);
    out.write(reinterpret_cast<const char*>(image->bytes.data()),
              static_cast<std::streamsize>(image->bytes.size()));
  }

  // tsc_early_khz: TCG offers no kvmclock, and a hardware-reduced platform has no PIT or
  // HPET clock event for Linux to calibrate the LAPIC timer against.
  std::string cmd =
      "cd " + dir.string() + " && timeout 180 qemu-system-x86_64"
      " -machine microvm,acpi=off,auto-kernel-cmdline=off -accel tcg -cpu max -smp 2 -m 256"
      " -nodefaults -no-user-config -nographic -serial stdio -no-reboot"
      " -kernel " + kernel.string() + " -initrd initrd.gz"
      " -append 'console=ttyS0 panic=-1 tsc_early_khz=2000000'"
      " -device loader,file=acpi.bin,addr=0xe0000,force-raw=on"
      " -drive id=d0,file=disk.img,format=raw,if=none -device virtio-blk-device,drive=d0"
      " -pidfile qemu.pid";
  std::string log = run_guest(cmd, dir / "qemu.pid", "@@ done");
  fs::remove_all(dir);
  ASSERT_NE(log.find("@@ done"), std::string::npos) << "the guest did not finish:\n" << log;
  EXPECT_NE(log.find("ACPI: RSDP 0x00000000000E0000 000024 (v02 FLICK )"), std::string::npos);
  EXPECT_NE(log.find("ACPI: Using ACPI (MADT) for SMP configuration information"),
            std::string::npos) << log;
  EXPECT_NE(log.find("@@ cpus 2"), std::string::npos) << log;
  EXPECT_NE(log.find("ACPI: PM: (supports S0 S5)"), std::string::npos) << log;
  for (uint32_t i = 0; i < kMicrovmVirtioTransports; ++i) {
    std::string dev = "@@ acpi LNRO0005:0" + std::to_string(i);
    EXPECT_NE(log.find(dev), std::string::npos) << dev << "\n" << log;
  }
  EXPECT_NE(log.find("@@ acpi PNP0501:00"), std::string::npos) << log;
  // QEMU plugs the disk into the last transport: the driver found it at the DSDT's window.
  EXPECT_NE(log.find("@@ virtio 0x0002"), std::string::npos) << log;
  EXPECT_NE(log.find("@@ vda 16384"), std::string::npos) << log;
  EXPECT_NE(log.find("IO-APIC  12-edge      virtio0"), std::string::npos) << log;
  EXPECT_NE(log.find("IO-APIC   4-edge      ttyS0"), std::string::npos) << log;
  EXPECT_EQ(log.find("ACPI Error"), std::string::npos) << log;
  EXPECT_EQ(log.find("ACPI BIOS Error"), std::string::npos) << log;
}

}  // namespace
}  // namespace flick::vmm::acpi
