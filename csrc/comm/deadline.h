// A wall-clock deadline for the comm room's blocking waits, and the backoff they
// sleep with so that polling ranks leave the (possibly oversubscribed) cores to
// the peers they wait for.
#pragma once

#include <chrono>
#include <thread>

namespace ravensp::comm {

class Deadline {
 public:
  using Clock = std::chrono::steady_clock;
  explicit Deadline(double seconds)
      : start_(Clock::now()),
        end_(start_ + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds))) {}
  bool expired() const { return Clock::now() >= end_; }
  double elapsed_s() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }
  // Milliseconds left, clamped to [0, cap_ms]: a poll() timeout.
  int remaining_ms(int cap_ms) const {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end_ - Clock::now()).count();
    if (left < 0) return 0;
    return left > cap_ms ? cap_ms : static_cast<int>(left);
  }

 private:
  Clock::time_point start_;
  Clock::time_point end_;
};

// Spin briefly (fast path for short waits), then sleep up to 1 ms per round.
class Backoff {
 public:
  void pause() {
    if (++rounds_ < 64) {
      std::this_thread::yield();
      return;
    }
    if (sleep_us_ < 1000) sleep_us_ *= 2;
    std::this_thread::sleep_for(std::chrono::microseconds(sleep_us_));
  }

 private:
  int rounds_ = 0;
  int sleep_us_ = 8;
};

}  // namespace ravensp::comm
