// Internal to lib/store: thin RAII over the SQLite C API (statements, transactions, the
// connection's lock) and the row helpers the MachineStore files share.
#pragma once

#include "store/machine_store.h"

#include <sqlite3.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace flick::store::detail {

// One operation on the store: the connection and what the caller asked for, which every
// SQLite failure names ("<what> in <path>: <why>").
struct Op {
  sqlite3* db;
  std::string what;

  // Maps a failed result code: SQLITE_FULL → io "disk full", SQLITE_BUSY (after the busy
  // timeout) → busy, NOTADB/CORRUPT → malformed, CONSTRAINT → invalid_argument, anything
  // else → io with sqlite3_errmsg.
  Error fail(int rc) const;
};

// A prepared statement. bind() takes parameters in order; a bind error surfaces at step().
class Stmt {
 public:
  static Result<Stmt> prepare(const Op& op, std::string_view sql);
  Stmt(Stmt&& o) noexcept;
  Stmt& operator=(Stmt&&) = delete;
  Stmt(const Stmt&) = delete;
  ~Stmt();

  Stmt& bind(std::string_view v);
  Stmt& bind(const char* v) { return bind(std::string_view(v)); }
  Stmt& bind(const std::string& v) { return bind(std::string_view(v)); }
  Stmt& bind(int64_t v);
  Stmt& bind(uint64_t v) { return bind(static_cast<int64_t>(v)); }
  Stmt& bind(int v) { return bind(static_cast<int64_t>(v)); }
  Stmt& bind(bool v) { return bind(static_cast<int64_t>(v)); }
  Stmt& bind_null();
  Stmt& bind_optional(const std::optional<std::string>& v) { return v ? bind(*v) : bind_null(); }

  Result<bool> step();  // true: a row is ready to read
  Result<void> run();   // steps to the end, ignoring rows
  // The extended code of the last failed step (e.g. SQLITE_CONSTRAINT_UNIQUE), or SQLITE_OK.
  int failed_code() const { return failed_; }

  bool is_null(int col) const;
  int64_t i64(int col) const;
  uint64_t u64(int col) const { return static_cast<uint64_t>(i64(col)); }
  std::string text(int col) const;  // "" for NULL

 private:
  Stmt(const Op& op, sqlite3_stmt* s) : op_(&op), s_(s) {}
  const Op* op_;
  sqlite3_stmt* s_;
  int next_ = 1;
  int bind_rc_ = SQLITE_OK;
  int failed_ = SQLITE_OK;
};

// One statement with no parameters and no rows wanted (PRAGMA, schema DDL).
Result<void> exec(const Op& op, const char* sql);

// BEGIN IMMEDIATE: takes the write lock up front, so the reads that decide a write see what
// the write replaces. The destructor rolls back unless commit() succeeded.
class Txn {
 public:
  static Result<Txn> begin(const Op& op);
  Txn(Txn&& o) noexcept : op_(o.op_) { o.op_ = nullptr; }
  Txn& operator=(Txn&&) = delete;
  ~Txn();
  Result<void> commit();

 private:
  explicit Txn(const Op& op) : op_(&op) {}
  const Op* op_;
};

// Holds the connection's own (recursive) mutex for one public call, so another thread using
// the same MachineStore cannot run statements inside this call's transaction.
class ConnLock {
 public:
  explicit ConnLock(sqlite3* db) : m_(sqlite3_db_mutex(db)) { sqlite3_mutex_enter(m_); }
  ~ConnLock() { sqlite3_mutex_leave(m_); }
  ConnLock(const ConnLock&) = delete;
  ConnLock& operator=(const ConnLock&) = delete;

 private:
  sqlite3_mutex* m_;
};

// Random bytes from getrandom(2) (which does not fail for small requests once the kernel's
// pool is ready; the process aborts if it ever does).
void random_bytes(void* buf, size_t n);

int64_t now_s();
std::string rfc3339(int64_t unix_s);  // "2006-01-02T15:04:05Z"

// The machine columns, in MachineRow order, for SELECTs that read_machine() decodes.
inline constexpr const char* kMachineCols =
    "id, name, app, region, state, config, instance_id, version, boot, last_exit, cordoned, "
    "created_at, updated_at";
MachineRow read_machine(const Stmt& st);

// The machine with this id, in any state (Errc::not_found "machine ID not found").
Result<MachineRow> load_machine(const Op& op, std::string_view id);

// Errc::lease_held with Fly's text when a live lease on the machine has a nonce other than `nonce`.
Result<void> check_lease(const Op& op, std::string_view machine_id,
                         const std::optional<std::string>& nonce);

Error machine_not_found(std::string_view id);

}  // namespace flick::store::detail
