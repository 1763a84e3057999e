// flickd: Fly's Machines REST API over this host's flick store, on a Unix socket and, when
// asked, on TCP. One more client of the store: machines live in their own flick-vmm
// processes, so they keep running when flickd stops, and `flick machine ...` sees the same
// machines at the same time.
#include "api.h"
#include "flick/shared.h"
#include "http_server.h"
#include "runner/guest_channel.h"

#include <flick/machine.h>
#include <flick/version.h>

#include <CLI/CLI.hpp>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/rand.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fcntl.h>
#include <sys/file.h>

#include <nlohmann/json.hpp>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;

namespace flick::flickd {
namespace {

struct Options {
  std::vector<std::string> listen;
  std::string socket;
  std::string region = "local";
  HostOptions host;
  bool no_network = false;
  size_t workers = 8;
  size_t max_body = 1u << 20;
  Capacity capacity = Capacity::of_this_host();
};

[[noreturn]] void die(const std::string& message) {
  std::fprintf(stderr, "flickd: %s\n", message.c_str());
  std::exit(1);
}

std::string sys_error(const std::string& what) { return what + ": " + std::strerror(errno); }

fs::path default_socket() {
  if (const char* run = std::getenv("XDG_RUNTIME_DIR"); run && *run) return fs::path(run) / "flick" / "api.sock";
  if (::geteuid() == 0) return "/run/flick/api.sock";
  die("no socket path: set XDG_RUNTIME_DIR or give --socket PATH");
}

// A bound, listening Unix socket at `path`, mode 0660. A socket file nobody answers on is
// left over from a flickd that died, and replaced; any other file there is an error.
HttpListener unix_listener(const fs::path& path) {
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  if (const auto st = fs::symlink_status(path); fs::exists(st)) {
    if (!fs::is_socket(st)) die(path.string() + " exists and is not a socket");
    if (flick::runner::connect_unix(path)) die("another flickd is serving " + path.string());
  }
  auto fd = flick::runner::listen_unix(path, 128);  // replaces the stale socket file
  if (!fd) die(fd.error().describe());
  if (::chmod(path.c_str(), 0660) != 0) die(sys_error("chmod " + path.string()));
  return {std::move(fd).value(), false};
}

// The address a TCP socket is bound to, "127.0.0.1:4280" or "[::1]:4280" (port 0 resolved).
std::string bound_address(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  char host[NI_MAXHOST], port[NI_MAXSERV];
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0 ||
      ::getnameinfo(reinterpret_cast<sockaddr*>(&ss), len, host, sizeof host, port, sizeof port,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0)
    return "?";
  return ss.ss_family == AF_INET6 ? "[" + std::string(host) + "]:" + port : std::string(host) + ":" + port;
}

// "HOST:PORT" or "[V6]:PORT" (a bare ":PORT" is every address; port 0 any free one).
HttpListener tcp_listener(const std::string& spec) {
  const auto colon = spec.rfind(':');
  if (colon == std::string::npos) die("--listen " + spec + ": expected HOST:PORT");
  std::string host = spec.substr(0, colon);
  const std::string port = spec.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &found); rc != 0)
    die("--listen " + spec + ": " + ::gai_strerror(rc));
  UniqueFd fd(::socket(found->ai_family, found->ai_socktype | SOCK_CLOEXEC, found->ai_protocol));
  int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  bool loopback = false;
  if (found->ai_family == AF_INET)
    loopback = (ntohl(reinterpret_cast<sockaddr_in*>(found->ai_addr)->sin_addr.s_addr) >> 24) == 127;
  else if (found->ai_family == AF_INET6)
    loopback = IN6_IS_ADDR_LOOPBACK(&reinterpret_cast<sockaddr_in6*>(found->ai_addr)->sin6_addr);
  const int bound = ::bind(fd.get(), found->ai_addr, found->ai_addrlen);
  ::freeaddrinfo(found);
  if (fd.get() < 0 || bound != 0 || ::listen(fd.get(), 128) != 0) die(sys_error("--listen " + spec));
  if (!loopback)
    std::fprintf(stderr, "flickd: warning: %s is reachable beyond this host; the API token is all that guards it\n",
                 spec.c_str());
  return {std::move(fd), true};
}

// FLICK_API_TOKEN, else <state>/api-token, made (0600, 32 random bytes in hex) on first start.
std::string api_token(const fs::path& state_dir) {
  if (const char* t = std::getenv("FLICK_API_TOKEN"); t && *t) return t;
  const fs::path path = state_dir / "api-token";
  if (std::ifstream in(path); in) {
    std::string token;
    std::getline(in, token);
    if (!token.empty()) return token;
  }
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof bytes) != 1) die("could not make an API token: no randomness");
  std::string token;
  for (unsigned char b : bytes) {
    static constexpr char kHex[] = "0123456789abcdef";
    token += kHex[b >> 4];
    token += kHex[b & 15];
  }
  const fs::path tmp = path.string() + ".tmp";
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  const std::string line = token + "\n";
  if (fd.get() < 0 || ::write(fd.get(), line.data(), line.size()) != static_cast<ssize_t>(line.size()) ||
      ::fsync(fd.get()) != 0 || ::rename(tmp.c_str(), path.c_str()) != 0)
    die(sys_error("writing " + path.string()));
  return token;
}

// One flickd per state directory: <state>/flickd.lock, flock-held for flickd's life, and
// beside it flickd.json saying where it serves (what `flick daemon status` reads).
UniqueFd claim_state_dir(const fs::path& state_dir) {
  const fs::path path = state_dir / "flickd.lock";
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (fd.get() < 0) die(sys_error("opening " + path.string()));
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0)
    die("another flickd serves " + state_dir.string() + " (see flick daemon status)");
  return fd;
}

void write_status(const fs::path& state_dir, const fs::path& socket, const std::vector<std::string>& addresses,
                  const std::string& region) {
  nlohmann::ordered_json j{{"pid", ::getpid()},
                           {"version", FLICK_VERSION_STRING},
                           {"started_at", std::chrono::duration_cast<std::chrono::seconds>(
                                              std::chrono::system_clock::now().time_since_epoch())
                                              .count()},
                           {"region", region},
                           {"socket", socket.string()},
                           {"listen", addresses}};
  const fs::path path = state_dir / "flickd.json", tmp = state_dir / "flickd.json.tmp";
  std::ofstream(tmp) << j.dump(2) << "\n";
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) die("writing " + path.string() + ": " + ec.message());
}

int run(Options o) {
  // Signals are taken by sigwait() below; every thread started from here on blocks them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  o.host.images = cli::store_options_from_env();
  if (o.no_network) o.host.network = HostOptions::Networking::none;
  auto host = Host::open(o.host);  // settles runs that ended while no one watched
  if (!host) die(host.error().describe());
  const fs::path state_dir = (*host)->options().state_dir;
  const UniqueFd state_lock = claim_state_dir(state_dir);
  const std::string token = api_token(state_dir);

  std::vector<HttpListener> listeners;
  const fs::path socket = o.socket.empty() ? default_socket() : fs::path(o.socket);
  listeners.push_back(unix_listener(socket));
  std::vector<std::string> addresses;
  for (const auto& spec : o.listen) {
    listeners.push_back(tcp_listener(spec));
    addresses.push_back(bound_address(listeners.back().fd.get()));
  }

  Api api(**host, {token, o.region, o.capacity});
  HttpServerOptions server_options;
  server_options.workers = o.workers;
  server_options.max_body = o.max_body;
  auto server = HttpServer::start(
      std::move(listeners), [&api](HttpRequest r, Respond respond) { api.handle(std::move(r), std::move(respond)); },
      server_options);
  if (!server) die(server.error().describe());
  std::printf("flickd: serving unix:%s", socket.c_str());
  for (const auto& a : addresses) std::printf(" http://%s", a.c_str());
  std::printf("\n");
  std::fflush(stdout);
  write_status(state_dir, socket, addresses, o.region);

  // Machines that should be running and are not (the host rebooted): started again, while
  // the API already answers.
  std::thread reconcile([&host] {
    auto started = (*host)->restart_lost_machines();
    if (!started)
      return (void)std::fprintf(stderr, "flickd: restarting lost machines: %s\n", started.error().describe().c_str());
    for (const auto& id : *started)
      std::fprintf(stderr, "flickd: started machine %s again (restart policy always; its run was lost)\n", id.c_str());
  });

  int signo = 0;
  sigwait(&stop_signals, &signo);
  api.shutdown();
  (*server)->stop();
  reconcile.join();
  std::error_code ec;
  fs::remove(socket, ec);
  fs::remove(state_dir / "flickd.json", ec);
  return 0;
}

}  // namespace
}  // namespace flick::flickd

int main(int argc, char** argv) {
  flick::flickd::Options o;
  CLI::App app("flickd: Fly's Machines REST API over this host's flick machines", "flickd");
  app.add_option("--listen", o.listen, "also serve HTTP on HOST:PORT (a token is always required there; repeatable)")
      ->type_name("ADDR");
  app.add_option("--socket", o.socket, "the Unix socket (default $XDG_RUNTIME_DIR/flick/api.sock, as root /run/flick/api.sock)")
      ->type_name("PATH");
  app.add_option("--state-dir", o.host.state_dir, "machines and volumes (default $FLICK_STATE_DIR, ~/.local/state/flick)")
      ->type_name("DIR");
  app.add_option("--region", o.region, "the region this host's machines are in (default local)")->type_name("NAME");
  app.add_option("--kernel", o.host.kernel, "the default guest kernel (default $FLICK_KERNEL, else Debian's)")
      ->type_name("PATH");
  app.add_option("--kernel-modules", o.host.kernel_modules, "its lib/modules/<release> directory")->type_name("DIR");
  app.add_flag("--no-network", o.no_network, "give machines no network link to the host");
  app.add_option("--workers", o.workers, "threads that serve requests (a pending wait holds none)")
      ->type_name("N")
      ->check(CLI::Range(1, 256));
  app.add_option("--max-body", o.max_body, "the largest request body, in bytes (larger: 413)")
      ->type_name("BYTES")
      ->check(CLI::Range(1024, 64 << 20));
  bool routes = false;
  app.add_flag("--routes", routes, "print every route served, METHOD /path a line, and exit");
  app.add_option("--capacity-cpus", o.capacity.cpus,
                 "guest vCPUs that may run at once (default 4 per host CPU); a start beyond it is refused")
      ->type_name("N")
      ->capture_default_str();
  app.add_option("--capacity-memory-mb", o.capacity.memory_mb,
                 "guest memory that may be held at once (default the host's memory)")
      ->type_name("MB")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (routes) {
    for (const auto& r : flick::flickd::Api::routes()) std::printf("%s\n", r.c_str());
    return 0;
  }
  if (o.region != "local")
    flick::flickd::die("--region: this store's machines are in region local (other regions are not supported yet)");
  return flick::flickd::run(std::move(o));
}
