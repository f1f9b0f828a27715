// libtorch's float32 matmul precision (what torch.set_float32_matmul_precision sets), which tch
// does not expose. See permakey::precision for why and when it matters.
#include <ATen/Context.h>

extern "C" {

// Sets the precision by PyTorch's name ("highest", "high" or "medium"); returns 0, or -1 when
// libtorch refused it (the exception does not cross into Rust).
int pk_set_float32_matmul_precision(const char* name) {
  try {
    at::globalContext().setFloat32MatmulPrecision(name);
    return 0;
  } catch (...) {
    return -1;
  }
}

// 1 when float32 matmuls on CUDA may use TF32 tensor cores, 0 when not, -1 on an error.
int pk_allow_tf32_cublas() {
  try {
    return at::globalContext().allowTF32CuBLAS() ? 1 : 0;
  } catch (...) {
    return -1;
  }
}

}
