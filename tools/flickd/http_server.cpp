// HttpServer over libmicrohttpd (http_server.h): suspend on arrival, answer from a worker.
#include "http_server.h"

#include <microhttpd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <thread>

namespace flick::flickd {

std::optional<std::string> HttpRequest::query_value(const std::string& name) const {
  for (const auto& [k, v] : query)
    if (k == name) return v;
  return std::nullopt;
}

std::optional<std::string> HttpRequest::header(const std::string& name) const {
  auto it = headers.find(name);
  if (it == headers.end()) return std::nullopt;
  return it->second;
}

namespace {

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// A fixed set of threads running tasks in order of arrival.
class WorkerPool {
 public:
  explicit WorkerPool(size_t n) {
    for (size_t i = 0; i < n; ++i) threads_.emplace_back([this] { run(); });
  }
  ~WorkerPool() {
    {
      std::lock_guard lock(mu_);
      closing_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  void post(std::function<void()> task) {
    {
      std::lock_guard lock(mu_);
      tasks_.push_back(std::move(task));
    }
    cv_.notify_one();
  }

 private:
  void run() {
    for (;;) {
      std::function<void()> task;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return closing_ || !tasks_.empty(); });
        if (tasks_.empty()) return;
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      task();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  bool closing_ = false;
  std::vector<std::thread> threads_;
};

// One request on its connection, from its first byte to MHD's completion callback.
struct Exchange {
  HttpRequest request;
  bool too_large = false;
  bool dispatched = false;
  std::mutex mu;
  std::optional<HttpResponse> response;  // set by Respond, queued once the connection resumes
};

}  // namespace

struct HttpServer::Impl {
  HttpHandler handler;
  HttpServerOptions options;
  std::vector<HttpListener> listeners;
  std::vector<MHD_Daemon*> daemons;
  std::unique_ptr<WorkerPool> workers;
  std::atomic<uint64_t> next_request_id{1};

  std::mutex mu;
  std::condition_variable idle;
  size_t in_flight = 0;  // requests handed to the handler and not yet answered
  bool stopped = false;

  void answered() {
    std::lock_guard lock(mu);
    --in_flight;
    if (in_flight == 0) idle.notify_all();
  }

  static MHD_Result queue(MHD_Connection* conn, const HttpResponse& r, uint64_t request_id) {
    MHD_Response* resp =
        MHD_create_response_from_buffer(r.body.size(), const_cast<char*>(r.body.data()), MHD_RESPMEM_MUST_COPY);
    if (!resp) return MHD_NO;
    if (!r.body.empty()) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r.content_type.c_str());
    MHD_add_response_header(resp, "fly-request-id", std::to_string(request_id).c_str());
    MHD_Result ok = MHD_queue_response(conn, static_cast<unsigned>(r.status), resp);
    MHD_destroy_response(resp);
    return ok;
  }

  static HttpResponse too_large_response(size_t limit) {
    return {413, "{\"error\":\"request body too large: the limit is " + std::to_string(limit) + " bytes\"}"};
  }

  MHD_Result access(MHD_Connection* conn, bool tcp, const char* url, const char* method, const char* upload,
                    size_t* upload_size, void** slot) {
    auto* ex = static_cast<Exchange*>(*slot);
    if (!ex) {  // the headers have arrived
      ex = new Exchange;
      *slot = ex;
      ex->request.method = method;
      ex->request.path = url;
      ex->request.tcp = tcp;
      MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, &Impl::add_query, &ex->request);
      MHD_get_connection_values(conn, MHD_HEADER_KIND, &Impl::add_header, &ex->request);
      if (auto length = ex->request.header("content-length");
          length && std::strtoull(length->c_str(), nullptr, 10) > options.max_body)
        return queue(conn, too_large_response(options.max_body), next_request_id++);  // the body is not read
      return MHD_YES;
    }
    if (*upload_size) {  // a piece of the body
      if (!ex->too_large && ex->request.body.size() + *upload_size <= options.max_body)
        ex->request.body.append(upload, *upload_size);
      else
        ex->too_large = true;
      *upload_size = 0;
      return MHD_YES;
    }
    if (ex->too_large) return queue(conn, too_large_response(options.max_body), next_request_id++);
    if (!ex->dispatched) {
      ex->dispatched = true;
      {
        std::lock_guard lock(mu);
        ++in_flight;
      }
      MHD_suspend_connection(conn);
      workers->post([this, conn, ex] { handler(ex->request, make_respond(conn, ex)); });
      return MHD_YES;
    }
    std::optional<HttpResponse> r;
    {
      std::lock_guard lock(ex->mu);
      r = std::move(ex->response);
    }
    if (!r) return MHD_YES;  // resumed without an answer: cannot happen, but do not answer twice
    return queue(conn, *r, next_request_id++);
  }

  // A Respond that answers once; if it is dropped unanswered, the client gets a 500 rather
  // than a connection that hangs forever.
  Respond make_respond(MHD_Connection* conn, Exchange* ex) {
    struct Pending {
      Impl* impl;
      MHD_Connection* conn;
      Exchange* ex;
      std::atomic<bool> done{false};
      void answer(HttpResponse r) {
        if (done.exchange(true)) return;
        {
          std::lock_guard lock(ex->mu);
          ex->response = std::move(r);
        }
        MHD_resume_connection(conn);
        impl->answered();
      }
      ~Pending() { answer({500, "{\"error\":\"internal error: the request was dropped unanswered\"}"}); }
    };
    auto pending = std::make_shared<Pending>();
    pending->impl = this;
    pending->conn = conn;
    pending->ex = ex;
    return [pending](HttpResponse r) { pending->answer(std::move(r)); };
  }

  static MHD_Result add_query(void* cls, MHD_ValueKind, const char* key, const char* value) {
    static_cast<HttpRequest*>(cls)->query.emplace_back(key, value ? value : "");
    return MHD_YES;
  }

  static MHD_Result add_header(void* cls, MHD_ValueKind, const char* key, const char* value) {
    static_cast<HttpRequest*>(cls)->headers.emplace(lower(key), value ? value : "");
    return MHD_YES;
  }
};

namespace {

template <bool Tcp>
MHD_Result access_handler(void* cls, MHD_Connection* conn, const char* url, const char* method, const char*,
                          const char* upload, size_t* upload_size, void** slot) {
  return static_cast<HttpServer::Impl*>(cls)->access(conn, Tcp, url, method, upload, upload_size, slot);
}

void completed(void*, MHD_Connection*, void** slot, MHD_RequestTerminationCode) {
  delete static_cast<Exchange*>(*slot);
  *slot = nullptr;
}

}  // namespace

Result<std::unique_ptr<HttpServer>> HttpServer::start(std::vector<HttpListener> listeners, HttpHandler handler,
                                                      HttpServerOptions options) {
  auto impl = std::make_unique<Impl>();
  impl->handler = std::move(handler);
  impl->options = options;
  impl->listeners = std::move(listeners);
  impl->workers = std::make_unique<WorkerPool>(std::max<size_t>(options.workers, 1));
  for (const auto& l : impl->listeners) {
    // No MHD_USE_ERROR_LOG: it would print a line for every client that misbehaves (they get
    // libmicrohttpd's own 4xx), and a start that fails is reported below.
    MHD_Daemon* d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_ALLOW_SUSPEND_RESUME, 0, nullptr,
        nullptr, l.tcp ? &access_handler<true> : &access_handler<false>, impl.get(), MHD_OPTION_LISTEN_SOCKET,
        l.fd.get(), MHD_OPTION_NOTIFY_COMPLETED, &completed, nullptr, MHD_OPTION_CONNECTION_TIMEOUT,
        static_cast<unsigned>(options.idle_timeout_s), MHD_OPTION_CONNECTION_LIMIT,
        static_cast<unsigned>(options.max_connections), MHD_OPTION_END);
    if (!d) {
      for (auto* started : impl->daemons) MHD_stop_daemon(started);
      return make_error(Errc::io, "http server: libmicrohttpd could not serve a listening socket");
    }
    impl->daemons.push_back(d);
  }
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() { stop(); }

void HttpServer::stop() {
  if (impl_->stopped) return;
  impl_->stopped = true;
  // No new connections; the listening sockets stay ours to close.
  for (auto* d : impl_->daemons) MHD_quiesce_daemon(d);
  {
    std::unique_lock lock(impl_->mu);
    impl_->idle.wait(lock, [&] { return impl_->in_flight == 0; });
  }
  impl_->workers.reset();
  for (auto* d : impl_->daemons) MHD_stop_daemon(d);
  impl_->daemons.clear();
  impl_->listeners.clear();
}

}  // namespace flick::flickd
