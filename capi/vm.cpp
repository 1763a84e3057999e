// flick_vm_*: one raw VM (flick::Vm): a kernel, disks, NICs, vsock, until it ends.
#include "objects.h"

#include <cstddef>

namespace flick::capi {

HandleTable<Vm>& vms() {
  static auto* table = new HandleTable<Vm>(0x56, "vm");  // never destroyed
  return *table;
}

namespace {

// Version 1 of flick_vm_options ended with console_userdata.
constexpr size_t kVmOptionsV1 = offsetof(flick_vm_options, disks);
const flick_vm_options kVmDefaults = FLICK_VM_OPTIONS_INIT;

flick_vm_exit_reason reason_of(VmExitReason r) {
  switch (r) {
    case VmExitReason::power_off: return FLICK_VM_EXIT_POWER_OFF;
    case VmExitReason::reboot: return FLICK_VM_EXIT_REBOOT;
    case VmExitReason::panic: return FLICK_VM_EXIT_PANIC;
    case VmExitReason::crash: return FLICK_VM_EXIT_CRASH;
    case VmExitReason::kvm_error: return FLICK_VM_EXIT_KVM_ERROR;
    case VmExitReason::stopped: return FLICK_VM_EXIT_STOPPED;
    case VmExitReason::vmm_error: return FLICK_VM_EXIT_VMM_ERROR;
  }
  return FLICK_VM_EXIT_VMM_ERROR;
}

// The devices of a version 2 struct.
int devices(VmConfig* cfg, const flick_vm_options& o, const char* fn) {
  if ((o.disk_count && !o.disks) || (o.nic_count && !o.nics))
    return fail_invalid(std::string(fn) + ": disks or nics is NULL with a count > 0");
  for (size_t i = 0; i < o.disk_count; ++i) {
    const auto& d = o.disks[i];
    if (!d.path || !*d.path) return fail_invalid(std::string(fn) + ": disks[" + std::to_string(i) + "].path is NULL or empty");
    flick::DiskConfig disk;
    disk.path = d.path;
    disk.read_only = d.read_only != 0;
    disk.copy_on_write = d.copy_on_write != 0;
    disk.serial = str(d.serial);
    cfg->disks.push_back(std::move(disk));
  }
  for (size_t i = 0; i < o.nic_count; ++i) {
    const auto& n = o.nics[i];
    if (!n.tap || !*n.tap) return fail_invalid(std::string(fn) + ": nics[" + std::to_string(i) + "].tap is NULL or empty");
    cfg->nets.push_back(flick::NetConfig{n.tap, str(n.mac)});
  }
  if (o.vsock_uds_path) cfg->vsock = VsockConfig{o.vsock_uds_path, o.vsock_guest_cid ? o.vsock_guest_cid : 3};
  return FLICK_OK;
}

}  // namespace

}  // namespace flick::capi

using namespace flick::capi;

extern "C" {

int flick_vm_options_init(flick_vm_options* opts, unsigned int version) {
  return guarded(__func__, [&](const char* fn) {
    return init_options(opts, version, FLICK_VM_OPTIONS_VERSION, kVmOptionsV1, kVmDefaults, fn);
  });
}

int flick_vm_create(flick_vm** out, const flick_vm_options* given) {
  return guarded(__func__, [&](const char* fn) {
    int rc = FLICK_OK;
    if (!clear_out(out, fn, "out", &rc)) return rc;
    flick_vm_options o = kVmDefaults;
    if ((rc = read_options(&o, given, FLICK_VM_OPTIONS_VERSION, kVmOptionsV1, fn, "flick_vm_options")) != FLICK_OK)
      return rc;
    if (!o.kernel) return fail_invalid(std::string(fn) + ": no kernel given");
    flick::VmConfig cfg;
    cfg.kernel = o.kernel;
    if (o.initrd) cfg.initrd = o.initrd;
    if (o.cmdline) cfg.cmdline = o.cmdline;
    if (o.cpus) cfg.cpus = o.cpus;
    if (o.memory_mib) cfg.memory_mib = o.memory_mib;
    if (auto console = o.console) {
      void* ud = o.console_userdata;
      cfg.console = [console, ud](std::string_view s) { console(ud, s.data(), s.size()); };
    }
    if (o.version >= 2 && (rc = devices(&cfg, o, fn)) != FLICK_OK) return rc;
    auto vm = flick::Vm::create(cfg);
    if (!vm) return fail(vm.error(), FLICK_ERROR_VMM);
    *out = vms().add<flick_vm>(std::shared_ptr<flick::Vm>(std::move(vm).value()));
    return ok();
  });
}

int flick_vm_start(flick_vm* vm) {
  return guarded(__func__, [&](const char* fn) {
    int rc = FLICK_OK;
    auto v = vms().find(vm, fn, &rc);
    if (!v) return rc;
    auto r = v->start();
    return r ? ok() : fail(r.error(), FLICK_ERROR_VMM);
  });
}

int flick_vm_wait(flick_vm_exit_reason* out_reason, char** out_detail, flick_vm* vm, int timeout_ms) {
  return guarded(__func__, [&](const char* fn) {
    int rc = FLICK_OK;
    if (!clear_out(out_reason, fn, "out_reason", &rc)) return rc;
    if (out_detail) *out_detail = nullptr;
    auto v = vms().find(vm, fn, &rc);
    if (!v) return rc;
    std::optional<flick::VmExit> e;
    if (timeout_ms < 0) {
      e = v->wait();
    } else {
      e = v->wait_for(std::chrono::milliseconds(timeout_ms));
      if (!e) return fail(FLICK_ETIMEOUT, FLICK_ERROR_VMM, std::string(fn) + ": the VM is still running");
    }
    if (out_detail) *out_detail = give(e->detail);
    *out_reason = reason_of(e->reason);
    return ok();
  });
}

int flick_vm_stop(flick_vm* vm) {
  return guarded(__func__, [&](const char* fn) {
    int rc = FLICK_OK;
    auto v = vms().find(vm, fn, &rc);
    if (!v) return rc;
    v->stop();
    return ok();
  });
}

void flick_vm_free(flick_vm* vm) {
  if (!vm) return;
  guarded(__func__, [&](const char* fn) {
    int rc = FLICK_OK;
    return vms().remove(vm, fn, &rc) ? ok() : rc;
  });
}

}  // extern "C"
