// The tiny training run the train tests build on: a two-layer model small enough
// for CPU ranks in CI (one Raven layer and, when hybrid, one softmax-attention
// layer), CPU, no progress output, no resume; and a fresh directory per call.
// Each test sets what it varies (lengths, steps, precision, output directory).
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <string>

#include "ravensp/check.h"
#include "ravensp/train.h"

namespace ravensp::train::test_support {

inline TrainConfig tiny_run(bool hybrid = false) {
  TrainConfig c;
  c.model.vocab_size = 32;
  c.model.hidden_size = 16;
  c.model.num_layers = 2;
  c.model.num_heads = 2;
  c.model.num_slots = 8;
  c.model.topk = 3;
  c.model.intermediate_size = 32;
  c.model.chunk_size = 8;
  if (hybrid) {
    c.model.attn_layers = {1};
    c.model.attn_num_heads = 4;
    c.model.attn_num_kv_heads = 2;
  }
  c.micro_batch = 2;
  c.grad_accum = 2;
  c.lr = 1e-2;
  c.device = "cpu";
  c.progress = "off";
  c.resume = "none";
  return c;
}

// A new directory per call (mkdtemp): no cleanup of earlier runs needed, and
// std::filesystem::remove_all is avoided (libtorch.so exports a copy that crashes).
inline std::string fresh_dir(const std::string& name) {
  std::string tmpl = ::testing::TempDir() + "ravensp-" + name + "-XXXXXX";
  RAVENSP_CHECK(::mkdtemp(tmpl.data()) != nullptr, "mkdtemp failed for ", tmpl);
  return tmpl;
}

}  // namespace ravensp::train::test_support
