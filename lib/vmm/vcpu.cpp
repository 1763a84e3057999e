#include "vmm/vcpu.h"

#include "base/hex.h"
#include "base/log.h"

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <cassert>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace flick::vmm {
namespace {

// A real-time signal interrupts KVM_RUN; its handler does nothing (immediate_exit does the work).
int kick_signal() { return SIGRTMIN + 3; }

void install_kick_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa{};
    sa.sa_handler = [](int) {};
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: KVM_RUN must return EINTR
    sigaction(kick_signal(), &sa, nullptr);
  });
}

std::string hex_bytes(const void* p, size_t n) {
  std::string s;
  char b[4];
  for (size_t i = 0; i < n; ++i) {
    std::snprintf(b, sizeof b, "%s%02x", i ? " " : "", static_cast<const uint8_t*>(p)[i]);
    s += b;
  }
  return s;
}

}  // namespace

void report_unhandled_access(std::atomic<unsigned>& count, const char* space, uint64_t addr,
                             size_t size, bool write) {
  // The first few are logged at warning level with their address; the rest at debug.
  unsigned n = count.fetch_add(1);
  auto level = n < 16 ? log::Level::warn : log::Level::debug;
  if (log::enabled(level))
    log::write(level, "guest %s %u byte(s) at unhandled %s address 0x%llx%s",
               write ? "wrote" : "read", static_cast<unsigned>(size), space,
               static_cast<unsigned long long>(addr), n == 15 ? " (further ones logged at debug level)" : "");
}

Vcpu::Vcpu(KvmVcpu kvm, Hooks hooks) : kvm_(std::move(kvm)), hooks_(std::move(hooks)) {
  assert(hooks_.pio && hooks_.mmio && hooks_.unhandled_accesses);
}

Vcpu::~Vcpu() {
  if (thread_.joinable()) {
    post(Message::finish);
    thread_.join();
  }
}

Result<void> Vcpu::spawn() {
  install_kick_handler();
  try {
    thread_ = std::thread([this] { thread_main(); });
  } catch (const std::system_error& e) {
    return make_error(Errc::no_memory, "starting the thread of vCPU " + std::to_string(kvm_.id()) +
                                           ": " + e.what());
  }
  return {};
}

void Vcpu::post(Message m) {
  {
    std::lock_guard lk(mu_);
    if (state_ == State::finished) return;
    mailbox_.push_back({m, nullptr, nullptr});
  }
  cv_.notify_all();
  kick();
}

void Vcpu::send(Message m) {
  auto ack = std::make_shared<std::promise<void>>();
  auto done = ack->get_future();
  {
    std::lock_guard lk(mu_);
    if (state_ == State::finished) return;
    mailbox_.push_back({m, ack, nullptr});
  }
  cv_.notify_all();
  kick();
  done.wait();
}

void Vcpu::kick() {
  // immediate_exit makes a KVM_RUN that has not entered the guest yet return at once; the
  // signal interrupts one that has.
  __atomic_store_n(&kvm_.run_state()->immediate_exit, 1, __ATOMIC_SEQ_CST);
  if (thread_.joinable()) pthread_kill(thread_.native_handle(), kick_signal());
}

void Vcpu::join() {
  if (thread_.joinable()) thread_.join();
}

Vcpu::State Vcpu::state() const {
  std::lock_guard lk(mu_);
  return state_;
}

Vcpu::State Vcpu::drain_mailbox(std::unique_lock<std::mutex>& lk) {
  (void)lk;
  while (!mailbox_.empty()) {
    Pending p = std::move(mailbox_.front());
    mailbox_.pop_front();
    if (state_ != State::finished) {
      switch (p.message) {
        case Message::resume: state_ = State::running; break;
        case Message::pause: state_ = State::paused; break;
        case Message::finish: state_ = State::finished; break;
        case Message::describe: break;
      }
    }
    if (p.message == Message::describe && p.description) *p.description = snapshot();
    if (p.ack) p.ack->set_value();
  }
  return state_;
}

std::string Vcpu::describe(std::chrono::milliseconds timeout) {
  const std::string name = "vcpu " + std::to_string(kvm_.id());
  auto ack = std::make_shared<std::promise<void>>();
  auto done = ack->get_future();
  auto out = std::make_shared<std::string>();
  {
    std::lock_guard lk(mu_);
    if (state_ == State::finished) return name + ": finished";
    mailbox_.push_back({Message::describe, ack, out});
  }
  cv_.notify_all();
  kick();
  if (done.wait_for(timeout) != std::future_status::ready)
    return name + ": did not answer within " + std::to_string(timeout.count()) +
           " ms (its thread is busy in the VMM: see its stack)";
  return out->empty() ? name + ": finished" : *out;
}

std::string Vcpu::snapshot() {
  static constexpr const char* kStates[] = {"paused", "running", "finished"};
  static constexpr const char* kMpStates[] = {"runnable", "uninitialized", "init-received", "halted",
                                              "sipi-received"};
  std::string s = "vcpu " + std::to_string(kvm_.id()) + " (" + kStates[static_cast<int>(state_)] +
                  ", " + std::to_string(exits_) + " exits, last reason " + std::to_string(last_exit_reason_) + ")";
  if (auto r = kvm_.get_regs(); r) {
    s += ": rip " + hex(r->rip) + " rsp " + hex(r->rsp) + " rflags " + hex(r->rflags) +
         ((r->rflags & 0x200) ? " (IF=1)" : " (IF=0)");
  } else {
    s += ": " + r.error().describe();
  }
  if (auto r = kvm_.get_sregs(); r)
    s += " cs " + hex(r->cs.selector) + " cr0 " + hex(r->cr0) + " cr3 " + hex(r->cr3) + " cr4 " +
         hex(r->cr4) + " efer " + hex(r->efer);
  if (auto r = kvm_.get_mp_state(); r)
    s += "; mp_state " + std::string(r->mp_state < 5 ? kMpStates[r->mp_state] : "?");
  if (auto r = kvm_.get_vcpu_events(); r) {
    s += "; events: exception " + (r->exception.injected || r->exception.pending
                                       ? std::to_string(r->exception.nr) : std::string("none"));
    s += " interrupt " + (r->interrupt.injected ? std::to_string(r->interrupt.nr) : std::string("none"));
    s += " nmi " + std::string(r->nmi.pending ? "pending" : r->nmi.injected ? "injected" : "none");
    if (r->interrupt.shadow) s += " shadow";
  }
  if (auto r = kvm_.get_lapic(); r) {
    auto reg = [&](size_t off) {
      uint32_t v;
      std::memcpy(&v, r->regs + off, sizeof v);
      return v;
    };
    // The vectors set in a 256-bit APIC register (IRR at 0x200, ISR at 0x100), 32 bits per 16 bytes.
    auto vectors = [&](size_t base) {
      std::string v;
      for (unsigned i = 0; i < 256; ++i)
        if (reg(base + (i / 32) * 0x10) & (1u << (i % 32))) v += (v.empty() ? "" : ",") + std::to_string(i);
      return v.empty() ? std::string("-") : v;
    };
    s += "; lapic tpr " + hex(reg(0x80)) + " irr " + vectors(0x200) + " isr " + vectors(0x100) +
         " timer lvt " + hex(reg(0x320)) + " initial " + std::to_string(reg(0x380)) + " current " +
         std::to_string(reg(0x390));
  }
  return s;
}

void Vcpu::thread_main() {
  std::unique_lock lk(mu_);
  for (;;) {
    cv_.wait(lk, [&] { return !mailbox_.empty() || state_ == State::running; });
    if (drain_mailbox(lk) == State::finished) break;
    if (state_ != State::running) continue;
    __atomic_store_n(&kvm_.run_state()->immediate_exit, 0, __ATOMIC_SEQ_CST);
    lk.unlock();

    if (!first_run_done_) {
      first_run_done_ = true;
      if (hooks_.on_first_run) hooks_.on_first_run();
    }
    int err = kvm_.run();
    Action action = Action::keep_running;
    if (err == 0) {
      action = handle_exit();
      // A kick means a message waits. KVM finishes an I/O or MMIO instruction only at the next
      // KVM_RUN; one with immediate_exit set does just that, so that a vCPU paused (and
      // perhaps saved) now has its state whole.
      while (action == Action::keep_running && __atomic_load_n(&kvm_.run_state()->immediate_exit, __ATOMIC_SEQ_CST) &&
             kvm_.run() == 0)
        action = handle_exit();
    } else if (err != EINTR && err != EAGAIN) {
      action = fail(VmExitReason::vmm_error,
                    "KVM_RUN on vCPU " + std::to_string(kvm_.id()) + " failed: " + std::strerror(err));
    }
    lk.lock();
    if (action == Action::stop) state_ = State::finished;
    if (state_ == State::finished) break;
  }
  state_ = State::finished;
  // Answer whatever arrived after the end so no sender waits forever.
  for (auto& p : mailbox_)
    if (p.ack) p.ack->set_value();
  mailbox_.clear();
}

Vcpu::Action Vcpu::fail(VmExitReason reason, std::string detail) {
  if (hooks_.on_exit) hooks_.on_exit(VmExit{reason, std::move(detail)});
  return Action::stop;
}

std::string Vcpu::describe_location() {
  auto regs = kvm_.get_regs();
  if (!regs) return "vCPU " + std::to_string(kvm_.id());
  return "vCPU " + std::to_string(kvm_.id()) + " at rip " + hex(regs->rip);
}

Vcpu::Action Vcpu::handle_io() {
  auto& io = kvm_.run_state()->io;
  auto* base = reinterpret_cast<uint8_t*>(kvm_.run_state()) + io.data_offset;
  const bool write = io.direction == KVM_EXIT_IO_OUT;
  for (uint32_t i = 0; i < io.count; ++i) {
    std::span<uint8_t> data(base + static_cast<size_t>(i) * io.size, io.size);
    bool handled = write ? hooks_.pio->write(io.port, data) : hooks_.pio->read(io.port, data);
    if (!handled) {
      if (!write) std::fill(data.begin(), data.end(), 0xff);  // an empty ISA bus reads all-ones
      report_unhandled_access(*hooks_.unhandled_accesses, "port", io.port, io.size, write);
    }
  }
  return Action::keep_running;
}

Vcpu::Action Vcpu::handle_mmio() {
  auto& m = kvm_.run_state()->mmio;
  const uint32_t len = std::min<uint32_t>(m.len, sizeof m.data);
  std::span<uint8_t> data(m.data, len);
  bool handled = m.is_write ? hooks_.mmio->write(m.phys_addr, data) : hooks_.mmio->read(m.phys_addr, data);
  if (!handled) {
    if (!m.is_write) std::fill(data.begin(), data.end(), 0xff);
    report_unhandled_access(*hooks_.unhandled_accesses, "MMIO", m.phys_addr, len, m.is_write);
  }
  return Action::keep_running;
}

Vcpu::Action Vcpu::handle_exit() {
  kvm_run* run = kvm_.run_state();
  ++exits_;
  last_exit_reason_ = run->exit_reason;
  switch (run->exit_reason) {
    case KVM_EXIT_IO:
      unknown_exits_ = 0;
      return handle_io();
    case KVM_EXIT_MMIO:
      unknown_exits_ = 0;
      return handle_mmio();
    case KVM_EXIT_HLT:  // only without an in-kernel LAPIC; nothing to wait for here
    case KVM_EXIT_IRQ_WINDOW_OPEN:
    case KVM_EXIT_INTR:
      return Action::keep_running;
    case KVM_EXIT_SHUTDOWN:
      return fail(VmExitReason::crash, "guest triple fault (shutdown) on " + describe_location());
    case KVM_EXIT_SYSTEM_EVENT:
      switch (run->system_event.type) {
        case KVM_SYSTEM_EVENT_SHUTDOWN: return fail(VmExitReason::power_off, "guest powered off");
        case KVM_SYSTEM_EVENT_RESET: return fail(VmExitReason::reboot, "guest reset");
        default: return fail(VmExitReason::crash, "guest crash event " + std::to_string(run->system_event.type));
      }
    case KVM_EXIT_FAIL_ENTRY:
      return fail(VmExitReason::kvm_error,
                  "KVM could not enter the guest (hardware reason " +
                      hex(run->fail_entry.hardware_entry_failure_reason) + ") on " + describe_location());
    case KVM_EXIT_INTERNAL_ERROR: {
      const auto& ie = run->internal;
      std::string what = ie.suberror == KVM_INTERNAL_ERROR_EMULATION ? "emulation failure"
                                                                    : "suberror " + std::to_string(ie.suberror);
      std::string detail = "KVM internal error (" + what + ") on " + describe_location();
      const uint32_t n = std::min<uint32_t>(ie.ndata, 16);
      if (ie.suberror == KVM_INTERNAL_ERROR_EMULATION && n >= 3) {
        // Layout of emulation_failure: flags, insn_size, insn_bytes[16] (as u64 data words).
        const auto* ef = &run->emulation_failure;
        if (ef->flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES) {
          const size_t sz = std::min<size_t>(ef->insn_size, sizeof ef->insn_bytes);
          detail += ", instruction bytes " + hex_bytes(ef->insn_bytes, sz);
        }
      } else if (n > 0) {
        detail += ", data " + hex_bytes(ie.data, n * sizeof(ie.data[0]));
      }
      return fail(VmExitReason::kvm_error, detail);
    }
    default:
      // Unknown exits are logged and the guest resumed; a run of them ends the VM rather than
      // spinning forever.
      LOG_WARN("vCPU %u: unhandled KVM exit reason %u", kvm_.id(), run->exit_reason);
      if (++unknown_exits_ > 64)
        return fail(VmExitReason::kvm_error,
                    "repeated unhandled KVM exit " + std::to_string(run->exit_reason) + " on " +
                        describe_location());
      return Action::keep_running;
  }
}

}  // namespace flick::vmm
