// What the MachineStore tests share: a store in a scratch directory, rows to insert, a raw
// SQLite connection for what the API cannot do (aging a lease, a newer schema version).
#pragma once

#include "store/machine_store.h"
#include "support/temp_dir.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <stdexcept>
#include <string>

namespace flick::store::testing {

#define ASSERT_OK(expr)                                                                  \
  do {                                                                                   \
    auto&& ok_r_ = (expr);                                                               \
    ASSERT_TRUE(ok_r_.ok()) << #expr << ": " << ok_r_.error().describe();               \
  } while (0)

// The Result's value, failing the test (and throwing past it) when there is none.
template <class T>
T value_of(Result<T> r, const char* what) {
  if (!r) {
    ADD_FAILURE() << what << ": " << r.error().describe();
    throw std::runtime_error(what);
  }
  return std::move(r).value();
}
#define VALUE(expr) ::flick::store::testing::value_of((expr), #expr)

// The error of a call expected to fail with `code` (the test fails otherwise).
template <class T>
Error error_of(Result<T> r, Errc code, const char* what) {
  if (r) {
    ADD_FAILURE() << what << " succeeded; expected " << to_string(code);
    return {};
  }
  Error e = std::move(r).error();
  EXPECT_EQ(e.code, code) << what << ": " << e.describe();
  return e;
}
#define ERROR_OF(expr, code) ::flick::store::testing::error_of((expr), (code), #expr)

inline MachineRow make_machine(std::string id, std::string name, std::string app,
                               std::string config = "{}", std::string region = "local") {
  MachineRow m;
  m.id = std::move(id);
  m.name = std::move(name);
  m.app = std::move(app);
  m.region = std::move(region);
  m.config = std::move(config);
  return m;
}

inline EventRow event(std::string type, std::string source = "user") {
  EventRow e;
  e.type = std::move(type);
  e.source = std::move(source);
  return e;
}

// Runs SQL on a connection of its own (another writer, as far as the store can tell).
inline void raw_exec(const std::filesystem::path& db, const std::string& sql) {
  sqlite3* c = nullptr;
  ASSERT_EQ(sqlite3_open(db.c_str(), &c), SQLITE_OK);
  sqlite3_busy_timeout(c, 10'000);
  char* err = nullptr;
  int rc = sqlite3_exec(c, sql.c_str(), nullptr, nullptr, &err);
  std::string msg = err ? err : "";
  sqlite3_free(err);
  sqlite3_close(c);
  ASSERT_EQ(rc, SQLITE_OK) << sql << ": " << msg;
}

class StoreTest : public ::testing::Test {
 protected:
  std::filesystem::path db_path() const { return dir_.path() / "state" / "store.db"; }
  MachineStore open_store() { return VALUE(MachineStore::open(db_path())); }

  // An app `app` with a machine `id` named `name` in state "created".
  void add_machine(MachineStore& s, const std::string& app, const std::string& id, const std::string& name,
                   const std::string& config = "{}") {
    ASSERT_OK(s.ensure_app(app));
    ASSERT_OK(s.insert_machine(make_machine(id, name, app, config), event("launch")));
  }

  flick::testing::TempDir dir_{"flick-store"};
};

}  // namespace flick::store::testing
