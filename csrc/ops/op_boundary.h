// The edge between ravensp's torch-free errors and torch: every kernel
// registered with TORCH_LIBRARY_IMPL goes through RAVENSP_OP(fn), which turns a
// ravensp::Error (or any std::exception) into a c10::Error carrying the same
// message. Torch's Python bindings and autograd engine expect c10::Error; a
// foreign exception crossing the dispatcher has been seen to crash the process
// on the GPU machine (and in other projects' custom ops) instead of raising.
#pragma once

#include <c10/util/Exception.h>

#include <exception>
#include <utility>

namespace ravensp::ops {

template <auto Fn>
struct OpBoundary;

template <typename R, typename... Args, R (*Fn)(Args...)>
struct OpBoundary<Fn> {
  static R call(Args... args) {
    try {
      return Fn(std::forward<Args>(args)...);
    } catch (const c10::Error&) {
      throw;
    } catch (const std::exception& e) {
      TORCH_CHECK(false, e.what());
    }
  }
};

}  // namespace ravensp::ops

#define RAVENSP_OP(fn) (&::ravensp::ops::OpBoundary<&fn>::call)
