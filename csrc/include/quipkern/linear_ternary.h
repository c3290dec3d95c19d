// quipkern: ternary weight × activation products for the base-3 packing (docs/FORMATS.md,
// "Ternary weights", ternary-base3: 5 trits a byte, 80 columns a 16-byte block).
//
//   y[b, n] = scale[n or 0] · sum_k t[n, k] · x[b, k] (+ bias[n]),   t in {-1, 0, +1}
//
// The decode kernel (gemv) takes M <= 16 rows of x, already transformed by the caller.
// x, y and bias share one dtype (fp16 or bf16); accumulation is fp32.  (The ternary-2bit
// packing runs on the 2-bit kernels, linear_2bit.h.)
#pragma once

#include <cstdint>
#include <cuda_runtime.h>

#include "quipkern/status.h"

namespace quipkern {

struct LinearTernaryBase3Params {
  const void* x = nullptr;         // (M, K), rows x_row_stride elements apart (even), 4-byte aligned
  int64_t x_row_stride = 0;
  void* y = nullptr;               // (M, N), rows y_row_stride elements apart
  int64_t y_row_stride = 0;
  const uint8_t* packed = nullptr; // (N, 16·ceil(K/80)), 16-byte aligned
  const float* scale = nullptr;    // (N,) with per_row_scale, else (1,)
  bool per_row_scale = true;
  const void* bias = nullptr;      // (N,) in x's dtype, or nullptr
  int M = 0, N = 0, K = 0;         // K even
  DType dtype = DType::kBF16;      // kF16 or kBF16
};

constexpr int kGemvTernaryMaxM = 16;

// Decode: M in [1, 16].
Status linear_ternary_base3_gemv_launch(const LinearTernaryBase3Params& p, cudaStream_t stream);

}  // namespace quipkern
