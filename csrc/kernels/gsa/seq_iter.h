// Iteration over the (sequence, head) units of a GSA call on the CPU: each unit
// is one independent recurrence, so the reference runs them in parallel.
#pragma once

#include <algorithm>
#include <cstdint>

#include "kernels/gsa/params.h"
#include "ravensp/check.h"

namespace ravensp::kernels::gsa_detail {

// One independent recurrence: tokens [bos, eos) of batch row b, head h,
// initial/final state slot n.
struct Unit {
  int64_t n, h, bos, eos, row_offset;  // row_offset: flat token index of token 0 of row b
};

inline int64_t num_units(const GsaShape& s) { return s.num_seqs * s.heads; }

inline Unit unit_at(const GsaShape& s, int64_t idx) {
  Unit u;
  u.n = idx / s.heads;
  u.h = idx % s.heads;
  if (s.cu_seqlens_host != nullptr) {
    u.row_offset = 0;
    u.bos = s.cu_seqlens_host[u.n];
    u.eos = s.cu_seqlens_host[u.n + 1];
  } else {
    u.row_offset = u.n * s.seqlen;
    u.bos = 0;
    u.eos = s.seqlen;
  }
  return u;
}

// Element offset of token t (within its row), head h, for a per-token tensor
// with D features: layout [B, T, H, D].
inline int64_t tok(const GsaShape& s, const Unit& u, int64_t t, int64_t d) {
  return ((u.row_offset + t) * s.heads + u.h) * d;
}

// Parallel-for over units (OpenMP when built with it).
template <typename F>
void for_each_unit(const GsaShape& s, F&& f) {
  const int64_t n = num_units(s);
#if defined(_OPENMP)
#pragma omp parallel for schedule(dynamic, 1)
#endif
  for (int64_t i = 0; i < n; ++i) f(unit_at(s, i));
}

// A state slice [n] at `offset` of src, or zeros when src is null (no state given).
template <typename T>
void load_state(const void* src, int64_t offset, int64_t n, T* dst) {
  if (src == nullptr) {
    std::fill(dst, dst + n, T(0));
  } else {
    const T* s = static_cast<const T*>(src) + offset;
    std::copy(s, s + n, dst);
  }
}

// The CPU reference computes in the inputs' dtype, which must be fp32 or fp64;
// the ops layer converts half types first.
inline void check_cpu_dtypes(const char* fn, DType dtype, DType accum) {
  RAVENSP_CHECK(dtype == DType::kFloat32 || dtype == DType::kFloat64, fn,
                ": CPU reference takes float32 or float64 tensors, got ", dtype_name(dtype));
  RAVENSP_CHECK(dtype == accum, fn, ": CPU reference needs accum dtype == dtype (",
                dtype_name(dtype), "), got ", dtype_name(accum));
}

}  // namespace ravensp::kernels::gsa_detail
