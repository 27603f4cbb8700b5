// The one argument-check macro of ravensp, torch-free so every room can use it.
//
// RAVENSP_CHECK(cond, parts...) throws ravensp::Error whose message carries
// file:line, the failed condition and the streamed parts, which should name the
// argument and both the expected and the actual value. Library code never
// calls exit() and never hides a side effect inside assert().
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace ravensp {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {

inline void stream_parts(std::ostringstream&) {}

template <typename T, typename... Rest>
void stream_parts(std::ostringstream& os, const T& first, const Rest&... rest) {
  os << first;
  stream_parts(os, rest...);
}

template <typename... Parts>
[[noreturn]] void throw_check(const char* file, int line, const char* cond,
                              const Parts&... parts) {
  std::ostringstream os;
  stream_parts(os, parts...);
  os << " [" << file << ":" << line << ": " << cond << "]";
  throw Error(os.str());
}

}  // namespace detail

// "[2, 128, 64]" for messages about shapes.
template <typename Seq>
std::string shape_str(const Seq& dims) {
  std::ostringstream os;
  os << "[";
  bool first = true;
  for (auto d : dims) {
    if (!first) os << ", ";
    os << d;
    first = false;
  }
  os << "]";
  return os.str();
}

}  // namespace ravensp

#define RAVENSP_CHECK(cond, ...)                                                 \
  do {                                                                           \
    if (!(cond)) {                                                               \
      ::ravensp::detail::throw_check(__FILE__, __LINE__, #cond, ##__VA_ARGS__); \
    }                                                                            \
  } while (0)
