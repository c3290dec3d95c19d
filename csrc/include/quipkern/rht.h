// quipkern: randomized Hadamard transform of rows (docs/FORMATS.md, "Transforms").
//
//   y[r] = scale · S_out · T · S_in · x[r]        (T^T when transpose)
//   T    = Q_m ⊗ (H_p / sqrt(p)),  n = m · p,  p = 2^log2_p,  H_p Sylvester-ordered
//
// Element i of a row is (a, b) = divmod(i, p).  Q is m × m row-major fp32 (orthonormal),
// or nullptr for Q = I_m: then T is H_p / sqrt(p) on each of the m chunks of p elements
// (m == 1 always takes nullptr).  Signs are bitmasks: element i is negated iff bit i % 8 of byte
// i / 8 is set (nullptr: no signs).  x and y may be the same buffer (in-place) when
// their row strides are equal and n_in == n_out == n.  Accumulation is fp32 (for fp16 /
// bf16 data the Q_m stage runs on tensor cores with bf16 hi + lo splits of both sides,
// ~2^-16 relative, below the output's rounding); y has x's dtype.
//
// Padded widths (docs/FORMATS.md, "Widths without a cheap transform"): a row of x may
// hold only its first n_in <= n elements (the kernel reads the rest as zeros, never
// touching memory past n_in), and only the first n_out <= n elements of a row of y are
// written.  The input transform of a padded layer uses n_in < n, the output transform
// n_out < n.
#pragma once

#include <cstdint>
#include <cuda_runtime.h>

#include "quipkern/status.h"

namespace quipkern {

struct RhtParams {
  const void* x = nullptr;
  void* y = nullptr;
  int64_t rows = 0;
  int64_t x_row_stride = 0;  // elements between row starts
  int64_t y_row_stride = 0;
  int n = 0;                 // transform width, n = m · 2^log2_p
  int n_in = 0;              // elements of a row of x read, 1 <= n_in <= n (0: n)
  int n_out = 0;             // elements of a row of y written, 1 <= n_out <= n (0: n)
  int m = 1;                 // dense factor order, 1 <= m <= kRhtMaxM
  int log2_p = 0;            // 0 <= log2_p <= kRhtMaxLog2P
  const float* q = nullptr;  // m × m, row-major, fp32; nullptr: I_m
  const uint8_t* signs_in = nullptr;
  const uint8_t* signs_out = nullptr;
  float scale = 1.0f;
  bool transpose = false;
  DType dtype = DType::kBF16;
};

constexpr int kRhtMaxM = 64;
constexpr int kRhtMaxLog2P = 15;       // p <= 32768
constexpr int kRhtMaxRowElems = 32768; // n <= 32768: the row lives in shared memory

Status rht_launch(const RhtParams& p, cudaStream_t stream);

}  // namespace quipkern
