// Vcpu: one vCPU thread, an explicit state machine (paused -> running -> finished) driven by
// messages. All kvm_run exit decoding lives in Vcpu::handle_exit().
#pragma once

#include "vmm/bus.h"
#include "vmm/kvm.h"

#include <flick/vm.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace flick::vmm {

class Vcpu {
 public:
  enum class State { paused, running, finished };
  enum class Message { resume, pause, finish, describe };

  struct Hooks {
    const Bus* pio = nullptr;
    const Bus* mmio = nullptr;
    // Called on this vCPU's thread when the guest (or KVM) ends the VM. Must not block on
    // vCPU acknowledgements.
    std::function<void(VmExit)> on_exit;
    // Called once, just before this vCPU's first KVM_RUN.
    std::function<void()> on_first_run;
    // Required: guest accesses nothing handled, counted per VM so that each VM's first ones
    // are logged.
    std::atomic<unsigned>* unhandled_accesses = nullptr;
  };

  Vcpu(KvmVcpu kvm, Hooks hooks);
  ~Vcpu();
  Vcpu(const Vcpu&) = delete;
  Vcpu& operator=(const Vcpu&) = delete;

  KvmVcpu& kvm() { return kvm_; }

  // Starts the thread in the paused state.
  Result<void> spawn();
  // Sends a message and waits until the thread has acted on it.
  void send(Message m);
  // Sends a message without waiting (safe from any vCPU thread).
  void post(Message m);
  void join();
  State state() const;
  // One line for debugging: registers, run state, pending events and the local APIC's pending
  // and in-service vectors, taken on this vCPU's thread (kicked out of the guest for it). Says
  // so when the thread does not answer within `timeout` (busy in the VMM) or has ended.
  std::string describe(std::chrono::milliseconds timeout);

 private:
  enum class Action { keep_running, stop };

  void thread_main();
  void kick();
  // Takes pending messages; returns the state to continue in.
  State drain_mailbox(std::unique_lock<std::mutex>& lk);
  Action handle_exit();
  Action handle_io();
  Action handle_mmio();
  Action fail(VmExitReason reason, std::string detail);
  std::string describe_location();
  std::string snapshot();

  KvmVcpu kvm_;
  Hooks hooks_;
  std::thread thread_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  struct Pending {
    Message message;
    std::shared_ptr<std::promise<void>> ack;
    std::shared_ptr<std::string> description;  // filled for Message::describe
  };
  std::deque<Pending> mailbox_;
  State state_ = State::paused;
  bool first_run_done_ = false;
  unsigned unknown_exits_ = 0;
  // Written and read on this vCPU's thread only.
  uint64_t exits_ = 0;
  uint32_t last_exit_reason_ = 0;
};

// Counts (in `count`) and reports guest accesses nothing handles, without flooding the log.
void report_unhandled_access(std::atomic<unsigned>& count, const char* space, uint64_t addr,
                             size_t size, bool write);

}  // namespace flick::vmm
