#include "store/store_db.h"

#include <sys/random.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <utility>

namespace flick::store::detail {

Error Op::fail(int rc) const {
  const char* file = sqlite3_db_filename(db, "main");
  std::string where = what + " in " + (file && *file ? file : "the store");
  switch (rc & 0xff) {
    case SQLITE_FULL:
      return make_error(Errc::io, where + ": disk full");
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return make_error(Errc::busy, where + ": the store is locked by another process");
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
      return make_error(Errc::malformed, where + ": " + sqlite3_errmsg(db));
    case SQLITE_CONSTRAINT:  // one the caller did not map to a better error itself
      return make_error(Errc::invalid_argument, where + ": " + sqlite3_errmsg(db));
    case SQLITE_NOMEM:
      return make_error(Errc::no_memory, where + ": SQLite ran out of memory");
    default:
      return make_error(Errc::io, where + ": " + sqlite3_errmsg(db));
  }
}

Result<Stmt> Stmt::prepare(const Op& op, std::string_view sql) {
  sqlite3_stmt* s = nullptr;
  int rc = sqlite3_prepare_v2(op.db, sql.data(), static_cast<int>(sql.size()), &s, nullptr);
  if (rc != SQLITE_OK) return op.fail(rc);
  return Stmt(op, s);
}

Stmt::Stmt(Stmt&& o) noexcept
    : op_(o.op_), s_(std::exchange(o.s_, nullptr)), next_(o.next_), bind_rc_(o.bind_rc_),
      failed_(o.failed_) {}

Stmt::~Stmt() { sqlite3_finalize(s_); }

Stmt& Stmt::bind(std::string_view v) {
  // An empty view may have a null data(), which SQLite would bind as NULL rather than ''.
  int rc = sqlite3_bind_text64(s_, next_++, v.data() ? v.data() : "", v.size(), SQLITE_TRANSIENT,
                               SQLITE_UTF8);
  if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  return *this;
}

Stmt& Stmt::bind(int64_t v) {
  int rc = sqlite3_bind_int64(s_, next_++, v);
  if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  return *this;
}

Stmt& Stmt::bind_null() {
  int rc = sqlite3_bind_null(s_, next_++);
  if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  return *this;
}

Result<bool> Stmt::step() {
  if (bind_rc_ != SQLITE_OK) return op_->fail(failed_ = bind_rc_);
  int rc = sqlite3_step(s_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  failed_ = sqlite3_extended_errcode(op_->db);
  return op_->fail(rc);
}

Result<void> Stmt::run() {
  for (;;) {
    FLICK_TRY_ASSIGN(bool row, step());
    if (!row) return {};
  }
}

bool Stmt::is_null(int col) const { return sqlite3_column_type(s_, col) == SQLITE_NULL; }

int64_t Stmt::i64(int col) const { return sqlite3_column_int64(s_, col); }

std::string Stmt::text(int col) const {
  auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s_, col));
  if (!p) return {};
  return std::string(p, static_cast<size_t>(sqlite3_column_bytes(s_, col)));
}

Result<void> exec(const Op& op, const char* sql) {
  FLICK_TRY_ASSIGN(Stmt st, Stmt::prepare(op, sql));
  return st.run();
}

Result<Txn> Txn::begin(const Op& op) {
  FLICK_TRY(exec(op, "BEGIN IMMEDIATE"));
  return Txn(op);
}

Txn::~Txn() {
  // A failed statement may already have ended the transaction (SQLITE_FULL, IOERR).
  if (op_ && !sqlite3_get_autocommit(op_->db)) sqlite3_exec(op_->db, "ROLLBACK", nullptr, nullptr, nullptr);
}

Result<void> Txn::commit() {
  FLICK_TRY(exec(*op_, "COMMIT"));
  op_ = nullptr;
  return {};
}

void random_bytes(void* buf, size_t n) {
  auto* p = static_cast<unsigned char*>(buf);
  while (n) {
    ssize_t got = ::getrandom(p, n, 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      std::abort();  // no entropy source: no safe ids or nonces either
    }
    p += got;
    n -= static_cast<size_t>(got);
  }
}

int64_t now_s() { return now_ms() / 1000; }

std::string rfc3339(int64_t unix_s) {
  std::time_t t = static_cast<std::time_t>(unix_s);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

MachineRow read_machine(const Stmt& st) {
  MachineRow m;
  m.id = st.text(0);
  m.name = st.text(1);
  m.app = st.text(2);
  m.region = st.text(3);
  m.state = st.text(4);
  m.config = st.text(5);
  m.instance_id = st.text(6);
  m.version = st.u64(7);
  m.boot = st.text(8);
  m.last_exit = st.text(9);
  m.cordoned = st.i64(10) != 0;
  m.created_at_ms = st.i64(11);
  m.updated_at_ms = st.i64(12);
  return m;
}

Error machine_not_found(std::string_view id) {
  return make_error(Errc::not_found, "machine " + std::string(id) + " not found");
}

Result<MachineRow> load_machine(const Op& op, std::string_view id) {
  FLICK_TRY_ASSIGN(Stmt st, Stmt::prepare(op, std::string("SELECT ") + kMachineCols +
                                                  " FROM machines WHERE id = ?"));
  st.bind(id);
  FLICK_TRY_ASSIGN(bool found, st.step());
  if (!found) return machine_not_found(id);
  return read_machine(st);
}

Result<void> check_lease(const Op& op, std::string_view machine_id,
                         const std::optional<std::string>& nonce) {
  FLICK_TRY_ASSIGN(Stmt st, Stmt::prepare(op, "SELECT nonce, owner, expires_at FROM leases "
                                              "WHERE machine_id = ? AND expires_at > ?"));
  st.bind(machine_id).bind(now_s());
  FLICK_TRY_ASSIGN(bool held, st.step());
  if (!held || (nonce && *nonce == st.text(0))) return {};
  // Fly's own text (a 409 in its API).
  return make_error(Errc::lease_held, "machine ID " + std::string(machine_id) + " lease currently held by " +
                                    st.text(1) + ", expires at " + rfc3339(st.i64(2)));
}

}  // namespace flick::store::detail
