// Host::Impl, shared by the Host and every Machine it created (machines keep it alive).
#pragma once

#include <flick/machine.h>

#include "machine/guest_kernel.h"

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

  std::mutex mu;
  // Per kernel and modules path (empty: the Host's default), made on the first create()
  // that boots it: the kernel to load and its base initramfs.
  std::map<std::string, BootFiles> boot;
  std::map<std::string, std::string> attached;  // volume name -> machine id, this process

  Impl(HostOptions o, ImageStore s) : options(std::move(o)), images(std::move(s)) {}

  // The host's kernel (fetched on first use) or the machine's own, with its initramfs.
  Result<BootFiles> boot_files(const GuestConfig& guest);
  std::filesystem::path machine_dir(const std::string& id) const {
    return options.state_dir / "machines" / id;
  }
  std::filesystem::path volume_dir() const { return options.state_dir / "volumes"; }
};

}  // namespace flick
