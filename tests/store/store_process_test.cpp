// MachineStore across processes: forked writers race one compare-and-set, or are SIGKILLed
// mid-write. Children open a store of their own after fork() (an SQLite connection must not
// cross a fork) and leave with _exit(), so no parent state is torn down twice.
#include "store_fixture.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <thread>

namespace flick::store::testing {
namespace {

// A child's view of a result, as its exit status.
enum ChildExit { kWon = 0, kLostWithState = 1, kOtherError = 2, kSetupFailed = 3 };

int wait_exit(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

using MachineStoreProcess = StoreTest;

TEST_F(MachineStoreProcess, RacingStartsHaveExactlyOneWinner) {
  constexpr int kChildren = 8;
  {
    MachineStore s = open_store();
    add_machine(s, "web", "m1", "one");
    ASSERT_OK(s.transition({.machine_id = "m1", .to = "stopped"}));
  }  // closed before fork()

  for (int round = 0; round < 3; ++round) {
    int ready[2], go[2];
    ASSERT_EQ(::pipe(ready), 0);
    ASSERT_EQ(::pipe(go), 0);
    std::vector<pid_t> kids;
    for (int i = 0; i < kChildren; ++i) {
      pid_t pid = ::fork();
      ASSERT_GE(pid, 0);
      if (pid == 0) {
        ::close(ready[0]);
        ::close(go[1]);
        auto store = MachineStore::open(db_path());
        if (!store) _exit(kSetupFailed);
        char c = 'r';
        if (::write(ready[1], &c, 1) != 1) _exit(kSetupFailed);
        (void)!::read(go[0], &c, 1);  // blocks until the parent closes its end: all start at once
        auto r = store->transition({.machine_id = "m1", .from = {"stopped"}, .to = "starting",
                                    .event = event("start")});
        if (r) _exit(kWon);
        const Error& e = r.error();
        if (e.code == Errc::busy && e.message == "machine m1 is starting") _exit(kLostWithState);
        std::fprintf(stderr, "child %d: %s\n", i, e.describe().c_str());
        _exit(kOtherError);
      }
      kids.push_back(pid);
    }
    ::close(ready[1]);
    ::close(go[0]);
    for (int i = 0; i < kChildren; ++i) {
      char c;
      ASSERT_EQ(::read(ready[0], &c, 1), 1) << "a child failed to open the store";
    }
    ::close(go[1]);  // go
    ::close(ready[0]);
    int won = 0, lost = 0;
    for (pid_t pid : kids) {
      int code = wait_exit(pid);
      if (code == kWon) ++won;
      else if (code == kLostWithState) ++lost;
      else ADD_FAILURE() << "child exited with " << code;
    }
    EXPECT_EQ(won, 1) << "round " << round;
    EXPECT_EQ(lost, kChildren - 1) << "round " << round;

    MachineStore s = open_store();
    EXPECT_EQ(VALUE(s.get_machine("", "m1")).state, "starting");
    auto events = VALUE(s.events("m1", 0));
    EXPECT_EQ(std::count_if(events.begin(), events.end(), [](const EventRow& e) { return e.type == "start"; }),
              round + 1);
    ASSERT_OK(s.transition({.machine_id = "m1", .from = {"starting"}, .to = "stopped"}));
  }
}

// The child's endless work: every kind of write, one call after another.
[[noreturn]] void write_forever(const std::filesystem::path& db, int round, int ready_fd) {
  auto opened = MachineStore::open(db);
  if (!opened) _exit(kSetupFailed);
  MachineStore& s = *opened;
  char c = 'r';
  if (::write(ready_fd, &c, 1) != 1) _exit(kSetupFailed);
  for (int i = 0;; ++i) {
    std::string id = "r" + std::to_string(round) + "-" + std::to_string(i);
    MachineRow m = make_machine(id, "n-" + id, "web", R"({"image":"alpine","metadata":{"i":")" + id + "\"}}");
    if (!s.insert_machine(m, event("launch"))) _exit(kOtherError);
    if (!s.transition({.machine_id = id, .from = {"created"}, .to = "starting", .event = event("start")}))
      _exit(kOtherError);
    EventRow e = event("custom", "flick");
    e.machine_id = id;
    if (!s.append_event(e)) _exit(kOtherError);
    if (!s.update_config(id, R"({"image":"alpine:2"})", 1, std::nullopt)) _exit(kOtherError);
    if (i % 3 == 0 && !s.transition({.machine_id = id, .to = "destroyed", .event = event("destroy")}))
      _exit(kOtherError);
  }
}

TEST_F(MachineStoreProcess, AKilledWriterLeavesOnlyWholeCalls) {
  {
    MachineStore s = open_store();
    ASSERT_OK(s.ensure_app("web"));
  }
  std::random_device rd;
  unsigned seed = rd();
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> delay_ms(1, 30);
  SCOPED_TRACE("seed " + std::to_string(seed));

  size_t machines = 0;
  for (int round = 0; round < 20; ++round) {
    int ready[2];
    ASSERT_EQ(::pipe(ready), 0);
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(ready[0]);
      write_forever(db_path(), round, ready[1]);
    }
    ::close(ready[1]);
    char c;
    ASSERT_EQ(::read(ready[0], &c, 1), 1) << "the writer failed to open the store";
    ::close(ready[0]);
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(rng)));
    ASSERT_EQ(::kill(pid, SIGKILL), 0);
    EXPECT_EQ(wait_exit(pid), 128 + SIGKILL) << "the writer stopped by itself (round " << round << ")";

    MachineStore s = open_store();
    ASSERT_EQ(VALUE(s.integrity_check()), "ok") << "round " << round;
    auto all = VALUE(s.list_machines({.include_destroyed = true}));
    for (const MachineRow& m : all) {
      auto versions = VALUE(s.versions(m.id));
      ASSERT_FALSE(versions.empty()) << m.id;
      EXPECT_EQ(versions.back().version, 1u) << m.id;
      EXPECT_EQ(versions.front().version, m.version) << m.id;
      auto events = VALUE(s.events(m.id, 0));
      ASSERT_FALSE(events.empty()) << m.id;
      EXPECT_EQ(events.back().type, "launch") << m.id;
      if (m.state == "destroyed") {
        EXPECT_EQ(events.front().type, "destroy") << m.id;
      }
    }
    machines = all.size();
  }
  EXPECT_GT(machines, 0u) << "the writers never got a machine in";
}

}  // namespace
}  // namespace flick::store::testing
