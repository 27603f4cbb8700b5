// TcpStore: the key/value rendezvous of torchrun-launched jobs. Rank 0 runs a
// small server (one thread per client; requests SET, TRYGET, ADD); clients poll
// TRYGET with backoff until a key appears or the deadline passes, so the server
// never blocks and a missing key ends in an Error naming the key and the rank.
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>

#include "comm/socket.h"
#include "ravensp/comm.h"

namespace ravensp::comm {
namespace {

enum : uint8_t { kSet = 1, kTryGet = 2, kAdd = 3 };
enum : uint8_t { kOk = 0, kMissing = 1 };

// A request is [op u8][key len u32][key][value len u64][value]; a reply is
// [status u8][value len u64][value].
void send_frame(const Socket& s, uint8_t tag, const std::string* key, const std::string& value, const Deadline& dl,
                const std::string& what) {
  std::string buf(1, static_cast<char>(tag));
  if (key != nullptr) {
    uint32_t kl = static_cast<uint32_t>(key->size());
    buf.append(reinterpret_cast<const char*>(&kl), 4).append(*key);
  }
  uint64_t vl = value.size();
  buf.append(reinterpret_cast<const char*>(&vl), 8).append(value);
  send_all(s, buf.data(), buf.size(), dl, what);
}

std::string recv_string(const Socket& s, size_t len_bytes, const Deadline& dl, const std::string& what) {
  uint64_t len = 0;
  recv_all(s, &len, len_bytes, dl, what);
  RAVENSP_CHECK(len < (uint64_t{1} << 32), what, ": corrupt store message (length ", len, ")");
  std::string out(len, '\0');
  recv_all(s, out.data(), len, dl, what);
  return out;
}

std::string encode_i64(int64_t v) { return std::string(reinterpret_cast<const char*>(&v), 8); }
int64_t decode_i64(const std::string& s) {
  int64_t v = 0;
  std::memcpy(&v, s.data(), s.size() < 8 ? s.size() : 8);
  return v;
}

}  // namespace

struct TcpStore::Server {
  Socket listener;
  int port = 0;
  std::atomic<bool> stop{false};
  std::thread acceptor;
  std::vector<std::thread> workers;  // touched by the acceptor only, joined after it
  std::mutex m;
  std::condition_variable left;  // signalled when a client disconnects
  std::map<std::string, std::string> kv;
  int active = 0;

  void serve(Socket s) {
    const std::string what = "tcp store server";
    try {
      while (!stop) {
        pollfd pf{s.fd(), POLLIN, 0};
        if (::poll(&pf, 1, 100) <= 0) continue;
        Deadline dl(60.0);  // a request arrives in one burst once its first byte has
        uint8_t op = 0;
        recv_all(s, &op, 1, dl, what);
        std::string key = recv_string(s, 4, dl, what);
        std::string value = recv_string(s, 8, dl, what);
        uint8_t status = kOk;
        std::string reply;
        {
          std::lock_guard<std::mutex> g(m);
          if (op == kSet) {
            kv[key] = value;
          } else if (op == kTryGet) {
            auto it = kv.find(key);
            if (it == kv.end()) status = kMissing;
            else reply = it->second;
          } else if (op == kAdd) {
            auto it = kv.find(key);
            int64_t v = (it == kv.end() ? 0 : decode_i64(it->second)) + decode_i64(value);
            kv[key] = reply = encode_i64(v);
          }
        }
        send_frame(s, status, nullptr, reply, dl, what);
      }
    } catch (const Error&) {
      // The client went away (normal at shutdown, or it failed): drop it.
    }
    std::lock_guard<std::mutex> g(m);
    --active;
    left.notify_all();
  }

  void accept_loop() {
    while (!stop) {
      pollfd pf{listener.fd(), POLLIN, 0};
      if (::poll(&pf, 1, 100) <= 0) continue;
      Socket s(::accept4(listener.fd(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!s.valid()) continue;
      set_nodelay(s);
      {
        std::lock_guard<std::mutex> g(m);
        ++active;
      }
      workers.emplace_back([this, sock = std::move(s)]() mutable { serve(std::move(sock)); });
    }
  }
};

struct TcpStore::Client {
  Socket sock;
  std::string where;  // "127.0.0.1:29500", for messages
  std::mutex m;

  // One request/reply round trip.
  std::pair<uint8_t, std::string> call(uint8_t op, const std::string& key, const std::string& value, double timeout,
                                       const std::string& what) {
    std::lock_guard<std::mutex> g(m);
    Deadline dl(timeout);
    std::string w = what + " (store server " + where + ")";
    send_frame(sock, op, &key, value, dl, w);
    uint8_t status = 0;
    recv_all(sock, &status, 1, dl, w);
    return {status, recv_string(sock, 8, dl, w)};
  }
};

TcpStore::TcpStore(const std::string& host, int port, bool is_server, int rank, double timeout_s)
    : rank_(rank), timeout_s_(timeout_s) {
  RAVENSP_CHECK(timeout_s > 0, "TcpStore: timeout_s must be > 0, got ", timeout_s);
  RAVENSP_CHECK(port >= 0 && port < 65536, "TcpStore: port must be in [0, 65535], got ", port);
  RAVENSP_CHECK(is_server || port > 0, "TcpStore rank ", rank, ": a client needs the server's port, got 0");
  int server_port = port;
  if (is_server) {
    server_ = std::make_unique<Server>();
    server_->listener = listen_any(port, SOMAXCONN);
    server_->port = server_port = local_port(server_->listener);
    server_->acceptor = std::thread([s = server_.get()] { s->accept_loop(); });
  }
  client_ = std::make_unique<Client>();
  client_->where = host + ":" + std::to_string(server_port);
  std::string what = "tcp store rank " + std::to_string(rank) + " connecting to " + client_->where;
  client_->sock = connect_to(host, server_port, Deadline(timeout_s), what);
}

TcpStore::~TcpStore() {
  client_.reset();
  if (!server_) return;
  {
    // Bounded wait for the other ranks to leave, so that a rank still reading
    // its last key is not cut off; a dead client has already disconnected.
    std::unique_lock<std::mutex> g(server_->m);
    server_->left.wait_for(g, std::chrono::duration<double>(timeout_s_), [this] { return server_->active == 0; });
  }
  server_->stop = true;
  server_->acceptor.join();
  for (std::thread& t : server_->workers) t.join();
}

int TcpStore::port() const {
  if (server_) return server_->port;
  return std::stoi(client_->where.substr(client_->where.rfind(':') + 1));
}

std::string TcpStore::local_address() const { return comm::local_address(client_->sock); }

void TcpStore::set(const std::string& key, const std::string& value) {
  client_->call(kSet, key, value, timeout_s_, "tcp store rank " + std::to_string(rank_) + " set('" + key + "')");
}

bool TcpStore::check(const std::string& key) {
  return client_->call(kTryGet, key, "", timeout_s_, "tcp store rank " + std::to_string(rank_) + " check('" + key +
                                                         "')").first == kOk;
}

std::string TcpStore::get(const std::string& key) {
  std::string what = "tcp store rank " + std::to_string(rank_) + " get('" + key + "')";
  Deadline dl(timeout_s_);
  int sleep_ms = 1;
  while (true) {
    auto [status, value] = client_->call(kTryGet, key, "", timeout_s_, what);
    if (status == kOk) return value;
    RAVENSP_CHECK(!dl.expired(), what, " timed out after ", dl.elapsed_s(), " s (", kTimeoutEnv, "=", timeout_s_,
                  "): no rank has set the key (store server ", client_->where, ")");
    std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms));
    sleep_ms = sleep_ms < 20 ? sleep_ms * 2 : 20;
  }
}

int64_t TcpStore::add(const std::string& key, int64_t delta) {
  return decode_i64(client_->call(kAdd, key, encode_i64(delta), timeout_s_,
                                  "tcp store rank " + std::to_string(rank_) + " add('" + key + "')")
                        .second);
}

void TcpStore::wait_all(const std::string& name, int n) {
  std::string what = "tcp store rank " + std::to_string(rank_) + " wait_all('" + name + "', " + std::to_string(n) + ")";
  std::string key = "wait_all/" + name;
  add(key, 1);
  Deadline dl(timeout_s_);
  int sleep_ms = 1;
  while (true) {
    int64_t arrived = add(key, 0);
    if (arrived >= n) return;
    RAVENSP_CHECK(!dl.expired(), what, " timed out after ", dl.elapsed_s(), " s (", kTimeoutEnv, "=", timeout_s_,
                  "): only ", arrived, " of ", n, " ranks arrived");
    std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms));
    sleep_ms = sleep_ms < 20 ? sleep_ms * 2 : 20;
  }
}

}  // namespace ravensp::comm
