// Every schema of the ravensp op namespace, in one place. Implementations
// register beside their code (gsa_cpu.cpp, cuda/gsa_cuda.cpp, gsa_autograd.cpp);
// SP ops add theirs with TORCH_LIBRARY_FRAGMENT from csrc/sp.
#include <torch/library.h>

TORCH_LIBRARY(ravensp, m) {
  // Low-level passes (no autograd): the forward also returns the fp32/fp64
  // softmax probabilities p [B, T, H, M] the backward needs and each row's
  // log-sum-exp lse [B, T, H], from which the backward rebuilds the scores
  // (u = log p + lse) instead of recomputing them; lse=None recomputes. With
  // save_states the CUDA forward also returns its chunk states (`states`, an
  // opaque uint8 buffer; empty otherwise and on CPU) and the backward given them
  // skips recomputing them; states=None recomputes.
  m.def("gsa_chunk_fwd(Tensor q, Tensor k, Tensor v, Tensor s, Tensor g, float scale, "
        "Tensor? hk0, Tensor? hv0, Tensor? cu_seqlens, int chunk_size, bool save_states=False) "
        "-> (Tensor o, Tensor hkT, Tensor hvT, Tensor p, Tensor lse, Tensor states)");
  m.def("gsa_chunk_bwd(Tensor grad_o, Tensor? grad_hkT, Tensor? grad_hvT, Tensor q, Tensor k, "
        "Tensor v, Tensor s, Tensor g, Tensor p, Tensor? lse, float scale, Tensor? hk0, "
        "Tensor? hv0, Tensor? cu_seqlens, int chunk_size, Tensor? states=None) "
        "-> (Tensor dq, Tensor dk, Tensor dv, Tensor ds, Tensor dg, Tensor dhk0, Tensor dhv0)");
  m.def("gsa_recurrent_fwd(Tensor q, Tensor k, Tensor v, Tensor s, Tensor g, float scale, "
        "Tensor? hk0, Tensor? hv0, Tensor? cu_seqlens) -> (Tensor o, Tensor hkT, Tensor hvT)");
  m.def("gsa_recurrent_bwd(Tensor grad_o, Tensor? grad_hkT, Tensor? grad_hvT, Tensor q, "
        "Tensor k, Tensor v, Tensor s, Tensor g, float scale, Tensor? hk0, Tensor? hv0, "
        "Tensor? cu_seqlens) "
        "-> (Tensor dq, Tensor dk, Tensor dv, Tensor ds, Tensor dg, Tensor dhk0, Tensor dhv0)");
  // Differentiable entry points (autograd kernels in gsa_autograd.cpp).
  m.def("gsa_chunk(Tensor q, Tensor k, Tensor v, Tensor s, Tensor g, float scale, "
        "Tensor? hk0=None, Tensor? hv0=None, Tensor? cu_seqlens=None, int chunk_size=64) "
        "-> (Tensor o, Tensor hkT, Tensor hvT)");
  m.def("gsa_recurrent(Tensor q, Tensor k, Tensor v, Tensor s, Tensor g, float scale, "
        "Tensor? hk0=None, Tensor? hv0=None, Tensor? cu_seqlens=None) "
        "-> (Tensor o, Tensor hkT, Tensor hvT)");
}
