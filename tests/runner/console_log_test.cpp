// ConsoleLog: a run's console file stays bounded, loses nothing but what is two files old,
// and names the line that says why the guest ended.
#include "runner/console_log.h"

#include "support/temp_dir.h"

#include <sys/stat.h>

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

namespace {

using flick::runner::ConsoleLog;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

ino_t inode(const std::string& path) {
  struct stat st{};
  return ::stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

TEST(ConsoleLog, MovesAsideAtItsCapAndKeepsTheBytesInOrder) {
  flick::testing::TempDir dir("flick-console");
  const std::string path = (dir.path() / "console.log").string();
  {
    std::ofstream(path) << std::string(300, 'o');  // a log from an earlier run counts
  }
  ConsoleLog log(path, 1000);
  const ino_t first = inode(path);
  log.write(std::string(600, 'a'));  // 900: fits
  EXPECT_EQ(slurp(path), std::string(300, 'o') + std::string(600, 'a'));
  log.write(std::string(200, 'b'));  // would be 1100: the log moves aside first
  EXPECT_NE(inode(path), first);     // a follower sees a new file
  EXPECT_EQ(slurp(path + ".1"), std::string(300, 'o') + std::string(600, 'a'));
  EXPECT_EQ(slurp(path), std::string(200, 'b'));
  log.write(std::string(900, 'c'));  // 1100 again: the oldest bytes go
  EXPECT_EQ(slurp(path + ".1"), std::string(200, 'b'));
  EXPECT_EQ(slurp(path), std::string(900, 'c'));
  log.write(std::string(5000, 'd'));  // one write beyond the cap still lands whole
  EXPECT_EQ(slurp(path), std::string(5000, 'd'));
  log.write("e");
  EXPECT_EQ(slurp(path), "e");
  struct stat st{};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST(ConsoleLog, TheTellingLineIsThePanicsOrElseTheLast) {
  flick::testing::TempDir dir("flick-console");
  ConsoleLog log((dir.path() / "console.log").string(), 1 << 20);
  EXPECT_EQ(log.telling_line(), "");
  log.write("booting\r\nmounting /\r\n");
  EXPECT_EQ(log.telling_line(), "mounting /");
  log.write("Kernel panic - not syncing: VFS: Unable to mount root fs\r\nCPU: 0 PID: 1\r\n---[ end ]---\r\n");
  EXPECT_EQ(log.telling_line(), "Kernel panic - not syncing: VFS: Unable to mount root fs");
}

TEST(ConsoleLog, AnUnwritableFolderLosesOutputButNotTheTail) {
  ConsoleLog log("/nonexistent-flick-dir/console.log", 1000);
  log.write("still here\n");
  EXPECT_EQ(log.telling_line(), "still here");
}

}  // namespace
