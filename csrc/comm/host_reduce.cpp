// Host reductions for every comm DType; see host_reduce.h.
#include "comm/host_reduce.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace ravensp::comm {

float half_to_float(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (man << 13);  // inf / nan
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (man << 13);  // normal: rebias 15 -> 127
  } else if (man == 0) {
    bits = sign;  // signed zero
  } else {
    // Subnormal half: value = man * 2^-24, exact in fp32.
    float v = std::ldexp(static_cast<float>(man), -24);
    return sign ? -v : v;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t float_to_half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  uint32_t exp = (x >> 23) & 0xffu;
  uint32_t man = x & 0x7fffffu;
  if (exp == 0xff) return sign | 0x7c00u | (man ? 0x200u : 0u);  // inf / nan
  int e = static_cast<int>(exp) - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00u;  // overflow -> inf
  if (e <= 0) {
    if (e < -10) return sign;  // underflow -> zero
    man |= 0x800000u;          // implicit bit
    int shift = 14 - e;
    uint32_t half_man = man >> shift;
    uint32_t rem = man & ((1u << shift) - 1);
    uint32_t halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (half_man & 1u))) ++half_man;
    return sign | static_cast<uint16_t>(half_man);
  }
  uint32_t half = (static_cast<uint32_t>(e) << 10) | (man >> 13);
  uint32_t rem = man & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (half & 1u))) ++half;  // may carry into exp: still correct
  return sign | static_cast<uint16_t>(half);
}

float bf16_to_float(uint16_t b) {
  uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t float_to_bf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7f800000u) == 0x7f800000u && (x & 0x7fffffu)) return static_cast<uint16_t>((x >> 16) | 0x40u);
  x += 0x7fffu + ((x >> 16) & 1u);  // round to nearest even
  return static_cast<uint16_t>(x >> 16);
}

namespace {

template <typename T>
void reduce_typed(void* inout, const void* in, size_t n, ReduceOp op) {
  T* a = static_cast<T*>(inout);
  const T* b = static_cast<const T*>(in);
  if (op == ReduceOp::kSum) {
    for (size_t i = 0; i < n; ++i) a[i] = static_cast<T>(a[i] + b[i]);
  } else {
    for (size_t i = 0; i < n; ++i) a[i] = std::max(a[i], b[i]);
  }
}

template <float (*ToF)(uint16_t), uint16_t (*FromF)(float)>
void reduce_16bit(void* inout, const void* in, size_t n, ReduceOp op) {
  uint16_t* a = static_cast<uint16_t*>(inout);
  const uint16_t* b = static_cast<const uint16_t*>(in);
  for (size_t i = 0; i < n; ++i) {
    float x = ToF(a[i]);
    float y = ToF(b[i]);
    a[i] = FromF(op == ReduceOp::kSum ? x + y : std::max(x, y));
  }
}

}  // namespace

void host_reduce(void* inout, const void* in, size_t count, DType dt, ReduceOp op) {
  switch (dt) {
    case DType::kInt8: return reduce_typed<int8_t>(inout, in, count, op);
    case DType::kUInt8: return reduce_typed<uint8_t>(inout, in, count, op);
    case DType::kInt32: return reduce_typed<int32_t>(inout, in, count, op);
    case DType::kInt64: return reduce_typed<int64_t>(inout, in, count, op);
    case DType::kFloat32: return reduce_typed<float>(inout, in, count, op);
    case DType::kFloat64: return reduce_typed<double>(inout, in, count, op);
    case DType::kFloat16: return reduce_16bit<half_to_float, float_to_half>(inout, in, count, op);
    case DType::kBFloat16: return reduce_16bit<bf16_to_float, float_to_bf16>(inout, in, count, op);
  }
  RAVENSP_CHECK(false, "host_reduce: unknown dtype value ", static_cast<int>(dt));
}

}  // namespace ravensp::comm
