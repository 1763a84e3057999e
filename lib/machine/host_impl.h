// Host::Impl, shared by the Host and every Machine handle it made (handles keep it alive).
#pragma once

#include <flick/machine.h>

#include "machine/guest_kernel.h"
#include "store/machine_store.h"

#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <string>

namespace flick {

// What a machine boots: the kernel and the cached base initramfs made for it.
struct BootFiles {
  std::filesystem::path kernel;
  std::filesystem::path base_initramfs;
};

struct Host::Impl {
  HostOptions options;  // every directory resolved
  ImageStore images;
  store::MachineStore store;  // one connection, serialised by SQLite (FULLMUTEX)

  std::mutex mu;
  // Per kernel and modules path (empty: the Host's default), made on the first create()
  // that boots it: the kernel to load and its base initramfs.
  std::map<std::string, BootFiles> boot;

  Impl(HostOptions o, ImageStore s, store::MachineStore st)
      : options(std::move(o)), images(std::move(s)), store(std::move(st)) {}

  // The host's kernel (fetched on first use) or the machine's own, with its initramfs.
  Result<BootFiles> boot_files(const GuestConfig& guest);
  // The machine's root filesystem: its image pulled by its policy, built at its size.
  Result<Rootfs> rootfs(const MachineConfig& config);
  // `had`'s file again when it is gone from the image cache (`image rm --force`, a pruned
  // cache): the same image, by digest from a registry, else re-imported and checked to be it.
  Result<void> restore_rootfs(const MachineConfig& config, const Rootfs& had);
  std::filesystem::path machine_dir(const std::string& id) const {
    return options.state_dir / "machines" / id;
  }
  std::filesystem::path volume_dir() const { return options.state_dir / "volumes"; }
  std::filesystem::path db_path() const { return options.state_dir / "flick.db"; }

  // A handle on a stored machine.
  Result<std::unique_ptr<Machine>> open_machine(const store::MachineRow& row, MachineHandlers handlers,
                                                std::shared_ptr<Impl> self);
  // Records how a run that ended unwatched ended (its monitor is gone), or finishes an
  // interrupted destroy. No-op when the machine's run is alive or it is settled.
  void settle_if_orphaned(const store::MachineRow& row);
};

}  // namespace flick
