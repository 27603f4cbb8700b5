// The built-in MQAR generator: each sequence is a pure function of (seed, index),
// so any rank regenerates exactly the sequence it needs and resume needs only the step.
#include <algorithm>
#include <numeric>
#include <random>

#include "train/data.h"

namespace ravensp::train {
namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

}  // namespace

MqarSource::MqarSource(int64_t vocab, int64_t seq_len, int64_t pairs, uint64_t seed)
    : vocab_(vocab), seq_len_(seq_len), pairs_(pairs), seed_(seed) {}

void MqarSource::generate(int64_t seq, std::vector<int64_t>& tokens,
                          std::vector<uint8_t>& scored) const {
  std::mt19937_64 rng(splitmix64(seed_ ^ splitmix64(static_cast<uint64_t>(seq))));
  const int64_t half = vocab_ / 2;
  tokens.assign(seq_len_ + 1, 0);
  scored.assign(seq_len_ + 1, 0);
  // Distinct keys from [1, half); values from [half, vocab).
  std::vector<int64_t> keys(half - 1);
  std::iota(keys.begin(), keys.end(), 1);
  for (int64_t i = 0; i < pairs_; ++i) {
    std::uniform_int_distribution<int64_t> pick(i, half - 2);
    std::swap(keys[i], keys[pick(rng)]);
  }
  std::vector<int64_t> values(pairs_);
  std::uniform_int_distribution<int64_t> value_dist(half, vocab_ - 1);
  for (auto& v : values) v = value_dist(rng);
  // Pairs sit at distinct even offsets of the context [0, seq_len + 1 - 2n).
  const int64_t context = seq_len_ + 1 - 2 * pairs_;
  std::vector<int64_t> slots(context / 2);
  std::iota(slots.begin(), slots.end(), 0);
  for (int64_t i = 0; i < pairs_; ++i) {
    std::uniform_int_distribution<int64_t> pick(i, static_cast<int64_t>(slots.size()) - 1);
    std::swap(slots[i], slots[pick(rng)]);
    tokens[2 * slots[i]] = keys[i];
    tokens[2 * slots[i] + 1] = values[i];
  }
  // Queries: the keys again, shuffled, each followed by its value (the target).
  std::vector<int64_t> order(pairs_);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  for (int64_t i = 0; i < pairs_; ++i) {
    const int64_t at = context + 2 * i;
    tokens[at] = keys[order[i]];
    tokens[at + 1] = values[order[i]];
    scored[at + 1] = 1;  // the value token is the target of the key before it
  }
}

void MqarSource::read(int64_t seq, const int64_t* positions, int64_t n, int64_t* inputs,
                      int64_t* targets) const {
  std::vector<int64_t> tokens;
  std::vector<uint8_t> scored;
  generate(seq, tokens, scored);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t p = positions[i];
    inputs[i] = tokens[p];
    targets[i] = scored[p + 1] ? tokens[p + 1] : kIgnoreIndex;
  }
}

}  // namespace ravensp::train
