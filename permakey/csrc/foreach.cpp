// Multi-tensor ("foreach") updates over lists of tensors, which tch does not bind (its generator
// skips functions that take tensor lists to mutate). On CUDA each call below is a handful of
// kernel launches for all the tensors of a list, instead of one or more per tensor; on the CPU
// libtorch runs the same per-tensor loop the Rust code ran, without crossing the FFI per op.
// See permakey::foreach for the callers and the numerics.
//
// Every function takes arrays of `at::Tensor*` (tch's `C_tensor` handles), returns 0 or -1 and
// writes the exception's message into `err` (never lets it cross into Rust).
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <cstdio>
#include <exception>
#include <vector>

namespace {

std::vector<at::Tensor> list(at::Tensor** tensors, int n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (int i = 0; i < n; ++i) out.push_back(*tensors[i]);
  return out;
}

int fail(const std::exception& e, char* err, size_t err_len) {
  std::snprintf(err, err_len, "%s", e.what());
  return -1;
}

}  // namespace

extern "C" {

// Adam in the TF/Keras form: m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
// p -= lr_t m / (sqrt(v) + eps), all in place.
int pk_foreach_adam(at::Tensor** params, at::Tensor** grads, at::Tensor** m, at::Tensor** v, int n, double beta1,
                    double beta2, double eps, double lr_t, char* err, size_t err_len) {
  try {
    c10::NoGradGuard no_grad;
    auto p = list(params, n), g = list(grads, n), ms = list(m, n), vs = list(v, n);
    at::_foreach_mul_(ms, beta1);
    at::_foreach_add_(ms, g, 1.0 - beta1);
    at::_foreach_mul_(vs, beta2);
    at::_foreach_addcmul_(vs, g, g, 1.0 - beta2);
    auto denominators = at::_foreach_sqrt(vs);
    at::_foreach_add_(denominators, eps);
    at::_foreach_addcdiv_(p, ms, denominators, -lr_t);
    return 0;
  } catch (const std::exception& e) {
    return fail(e, err, err_len);
  }
}

// Sum of the squares of every element of every tensor, accumulated in float64; one read-back.
int pk_foreach_sum_of_squares(at::Tensor** tensors, int n, double* out, char* err, size_t err_len) {
  try {
    c10::NoGradGuard no_grad;
    if (n == 0) {
      *out = 0.0;
      return 0;
    }
    auto norms = at::_foreach_norm(list(tensors, n), 2);
    *out = at::stack(norms).to(at::kDouble).square().sum().item<double>();
    return 0;
  } catch (const std::exception& e) {
    return fail(e, err, err_len);
  }
}

// tensors *= scale, in place.
int pk_foreach_mul_scalar(at::Tensor** tensors, int n, double scale, char* err, size_t err_len) {
  try {
    c10::NoGradGuard no_grad;
    auto ts = list(tensors, n);
    at::_foreach_mul_(ts, scale);
    return 0;
  } catch (const std::exception& e) {
    return fail(e, err, err_len);
  }
}

// dst += weight (src - dst), in place (Polyak averaging with weight = tau).
int pk_foreach_lerp(at::Tensor** dst, at::Tensor** src, int n, double weight, char* err, size_t err_len) {
  try {
    c10::NoGradGuard no_grad;
    auto d = list(dst, n), s = list(src, n);
    at::_foreach_lerp_(d, s, weight);
    return 0;
  } catch (const std::exception& e) {
    return fail(e, err, err_len);
  }
}

// tensors = 0, in place.
int pk_foreach_zero(at::Tensor** tensors, int n, char* err, size_t err_len) {
  try {
    c10::NoGradGuard no_grad;
    auto ts = list(tensors, n);
    at::_foreach_zero_(ts);
    return 0;
  } catch (const std::exception& e) {
    return fail(e, err, err_len);
  }
}

}
