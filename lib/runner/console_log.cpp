#include "runner/console_log.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <cstdio>
#include <utility>

namespace flick::runner {
namespace {
constexpr size_t kTail = 4096;
}

ConsoleLog::ConsoleLog(std::string path, uint64_t cap) : path_(std::move(path)), cap_(cap) {
  open();
  struct stat st{};
  if (fd_ && ::fstat(fd_.get(), &st) == 0) size_ = static_cast<uint64_t>(st.st_size);
}

void ConsoleLog::open() { fd_.reset(::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600)); }

void ConsoleLog::write(std::string_view bytes) {
  std::lock_guard lk(mu_);
  if (size_ > 0 && size_ + bytes.size() > cap_) {
    std::rename(path_.c_str(), (path_ + ".1").c_str());
    open();
    size_ = 0;
  }
  if (fd_ && write_all(fd_.get(), bytes) == 0) size_ += bytes.size();
  tail_.append(bytes);
  if (tail_.size() > 2 * kTail) tail_.erase(0, tail_.size() - kTail);
}

std::string ConsoleLog::telling_line() const {
  std::lock_guard lk(mu_);
  const std::string& t = tail_;
  size_t end = t.rfind("Kernel panic - not syncing");
  end = end != std::string::npos ? t.find_first_of("\r\n", end) : t.size();
  end = t.find_last_not_of("\r\n", end == std::string::npos ? t.size() : end);
  if (end == std::string::npos) return {};
  size_t begin = t.find_last_of("\r\n", end);
  begin = begin == std::string::npos ? 0 : begin + 1;
  return t.substr(begin, end - begin + 1);
}

}  // namespace flick::runner
