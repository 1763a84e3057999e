// Snapshots through flick::Vm: the test guest counts ticks; a snapshot taken mid-count and
// restored into a fresh VM must go on counting with its memory and TSC intact, and a damaged
// or mismatched snapshot must be refused with the reason.
#include <flick/vm.h>

#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <regex>
#include <string>
#include <thread>

namespace flick {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// Collects what the guest writes to COM1.
struct Console {
  std::mutex mu;
  std::string text;
  std::string get() {
    std::lock_guard lk(mu);
    return text;
  }
};

VmConfig count_config(uint32_t cpus, const std::shared_ptr<Console>& console) {
  VmConfig cfg;
  cfg.kernel = FLICK_TESTGUEST_PVH;
  cfg.cmdline = "testguest mode=count cpus=" + std::to_string(cpus);
  cfg.cpus = cpus;
  cfg.memory_mib = 64;
  cfg.console = [console](std::string_view s) {
    std::lock_guard lk(console->mu);
    console->text.append(s);
  };
  return cfg;
}

// The highest N of a complete "tick N" line in `text`, or 0.
unsigned last_tick(const std::string& text) {
  static const std::regex tick_line("tick ([0-9]+)\n");
  unsigned last = 0;
  for (std::sregex_iterator it(text.begin(), text.end(), tick_line), end; it != end; ++it)
    last = std::max(last, static_cast<unsigned>(std::stoul((*it)[1])));
  return last;
}

bool wait_for_tick(Console& console, unsigned tick, std::chrono::seconds limit = 60s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (last_tick(console.get()) >= tick) return true;
    std::this_thread::sleep_for(5ms);
  }
  return false;
}

class VmSnapshot : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) / ("flick-snapshot-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Boots the counting guest, saves it after a few ticks, stops it; returns its console.
  std::string boot_and_save(uint32_t cpus) {
    auto console = std::make_shared<Console>();
    auto vm = Vm::create(count_config(cpus, console));
    if (!vm) {
      ADD_FAILURE() << vm.error().describe();
      return {};
    }
    EXPECT_TRUE((*vm)->start().ok());
    EXPECT_TRUE(wait_for_tick(*console, 3)) << console->get();
    EXPECT_TRUE((*vm)->pause().ok());
    auto saved = (*vm)->snapshot(dir_.string());
    EXPECT_TRUE(saved.ok()) << saved.error().describe();
    (*vm)->stop();
    (*vm)->wait();
    return console->get();
  }

  // Restores, checks the count goes on from `before`, ends the count, returns the console.
  std::string restore_and_finish(uint32_t cpus, const std::string& before) {
    auto console = std::make_shared<Console>();
    auto vm = Vm::restore(count_config(cpus, console), dir_.string());
    if (!vm) {
      ADD_FAILURE() << vm.error().describe();
      return {};
    }
    EXPECT_TRUE((*vm)->start().ok());
    const unsigned saved_at = last_tick(before);
    EXPECT_TRUE(wait_for_tick(*console, saved_at + 2)) << console->get();
    (*vm)->send_console_input("q");
    auto exit = (*vm)->wait_for(60s);
    if (!exit) {
      ADD_FAILURE() << "the restored guest did not power off after 'q': " << console->get();
      (*vm)->stop();
      exit = (*vm)->wait();
    }
    const std::string after = console->get();
    EXPECT_EQ(exit->reason, VmExitReason::power_off) << exit->detail;
    // It went on where it was: no second boot, and the tick after the last one saved.
    EXPECT_EQ(after.find("flick-testguest: start"), std::string::npos) << after;
    EXPECT_NE((before + after).find("tick " + std::to_string(saved_at + 1) + "\n"), std::string::npos) << after;
    EXPECT_EQ((before + after).find("tick 1\n", before.find("tick 1\n") + 1), std::string::npos)
        << "the count started over: " << after;
    EXPECT_NE(after.find("memory pattern intact"), std::string::npos) << after;
    EXPECT_NE(after.find("flick-testguest: PASS"), std::string::npos) << after;
    return after;
  }

  fs::path dir_;
};

TEST_F(VmSnapshot, ARestoredGuestGoesOnWhereItWasSaved) {
  const std::string before = boot_and_save(1);
  ASSERT_FALSE(HasFailure());
  EXPECT_TRUE(fs::exists(dir_ / "vm.state"));
  EXPECT_EQ(fs::file_size(dir_ / "memory"), 64u << 20);
  // Untouched guest memory stays a hole.
  struct stat st{};
  ASSERT_EQ(::stat((dir_ / "memory").c_str(), &st), 0);
  EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, 16u << 20);
  restore_and_finish(1, before);
  // The restore wrote to its private copy only: the same snapshot restores again, from the same tick.
  restore_and_finish(1, before);
}

TEST_F(VmSnapshot, EveryVcpuIsRestored) {
  const std::string before = boot_and_save(2);
  ASSERT_FALSE(HasFailure());
  EXPECT_NE(before.find("ok smp 2/2"), std::string::npos) << before;
  restore_and_finish(2, before);
}

TEST_F(VmSnapshot, ARunningOrEndedVmIsNotSaved) {
  auto console = std::make_shared<Console>();
  auto vm = Vm::create(count_config(1, console));
  ASSERT_TRUE(vm.ok()) << vm.error().describe();
  ASSERT_TRUE((*vm)->start().ok());
  auto running = (*vm)->snapshot(dir_.string());
  ASSERT_FALSE(running.ok());
  EXPECT_EQ(running.error().code, Errc::busy);
  EXPECT_NE(running.error().message.find("pause the VM first"), std::string::npos) << running.error().message;
  EXPECT_FALSE(fs::exists(dir_ / "vm.state"));
  (*vm)->stop();
  (*vm)->wait();
  auto ended = (*vm)->snapshot(dir_.string());
  ASSERT_FALSE(ended.ok());
  EXPECT_NE(ended.error().message.find("ended"), std::string::npos) << ended.error().message;
}

// Each damaged snapshot is refused with its reason, before any KVM state is built.
TEST_F(VmSnapshot, ADamagedOrMismatchedSnapshotIsRefusedWithTheReason) {
  boot_and_save(1);
  ASSERT_FALSE(HasFailure());
  const fs::path state = dir_ / "vm.state", memory = dir_ / "memory";
  const fs::path good_state = dir_ / "good.state";
  fs::copy_file(state, good_state);
  auto console = std::make_shared<Console>();
  auto refused = [&](const VmConfig& cfg) {
    auto vm = Vm::restore(cfg, dir_.string());
    EXPECT_FALSE(vm.ok());
    return vm.ok() ? Error{} : vm.error();
  };
  auto reset_state = [&] { fs::copy_file(good_state, state, fs::copy_options::overwrite_existing); };

  {  // One byte flipped in the middle.
    std::fstream f(state, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(fs::file_size(state) / 2));
    char c;
    f.read(&c, 1);
    f.seekp(-1, std::ios::cur);
    c = static_cast<char>(c ^ 0x20);
    f.write(&c, 1);
  }
  Error e = refused(count_config(1, console));
  EXPECT_EQ(e.code, Errc::integrity);
  EXPECT_NE(e.message.find("checksum mismatch"), std::string::npos) << e.message;

  reset_state();
  fs::resize_file(state, fs::file_size(state) - 100);
  e = refused(count_config(1, console));
  EXPECT_EQ(e.code, Errc::malformed);
  EXPECT_NE(e.message.find("truncated"), std::string::npos) << e.message;

  reset_state();
  e = refused(count_config(2, console));
  EXPECT_EQ(e.code, Errc::invalid_argument);
  EXPECT_NE(e.message.find("is of another VM: it has 1 vCPU(s)"), std::string::npos) << e.message;

  VmConfig more_memory = count_config(1, console);
  more_memory.memory_mib = 128;
  e = refused(more_memory);
  EXPECT_NE(e.message.find("64 MiB"), std::string::npos) << e.message;

  {  // The memory file replaced by a copy: same bytes, another file.
    const fs::path copy = dir_ / "memory.copy";
    fs::copy_file(memory, copy);
    fs::rename(copy, memory);
  }
  e = refused(count_config(1, console));
  EXPECT_EQ(e.code, Errc::integrity);
  EXPECT_NE(e.message.find("is not the memory file saved with"), std::string::npos) << e.message;

  fs::remove(memory);
  e = refused(count_config(1, console));
  EXPECT_EQ(e.code, Errc::not_found);

  {
    std::ofstream junk(state, std::ios::binary | std::ios::trunc);
    junk << "not a snapshot";
  }
  e = refused(count_config(1, console));
  EXPECT_NE(e.message.find("not a flick VM state file"), std::string::npos) << e.message;
}

}  // namespace
}  // namespace flick
