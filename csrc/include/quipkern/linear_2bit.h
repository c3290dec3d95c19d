// quipkern: 2-bit weight × activation products (docs/FORMATS.md, "2-bit weights").
//
//   y[b, n] = sum_k x[b, k] · W[n, k] (+ bias[n]),   W[n, k] = s[n, k/g] · (c[n, k] − z[n, k/g])
//
// The decode kernel (gemv) takes M <= 16 rows of x, already transformed by the caller
// (the transforms of the layer are separate ops, see rht.h).  x, y and bias share one
// dtype (fp16 or bf16); accumulation is fp32.
#pragma once

#include <cstdint>
#include <cuda_runtime.h>

#include "quipkern/status.h"

namespace quipkern {

struct Linear2bitParams {
  const void* x = nullptr;        // (M, K), rows x_row_stride elements apart, last dim contiguous
  int64_t x_row_stride = 0;
  void* y = nullptr;              // (M, N), rows y_row_stride elements apart
  int64_t y_row_stride = 0;
  const int32_t* packed = nullptr;  // (N, K/16), 16-byte aligned
  const uint16_t* scales = nullptr; // fp16 bits, (N, K/g); nullptr when row_scales is given
  // Or one fp32 scale per row (group_size == K only): row n's at row_scales[n · row_scale_stride]
  // (stride 0: one scale for the whole tensor).  The ternary formats' scales as they are
  // stored, so that no conversion kernel runs before the GEMV.
  const float* row_scales = nullptr;
  int64_t row_scale_stride = 1;
  const uint16_t* zeros = nullptr;  // fp16 bits, (N, K/g), or nullptr: symmetric grid (z = 1.5)
  const void* bias = nullptr;       // (N,) in x's dtype, or nullptr
  int M = 0, N = 0, K = 0;
  int group_size = 0;               // 64, 128, or K (one scale per row)
  DType dtype = DType::kBF16;       // kF16 or kBF16
  // Launch with programmatic dependent launch (csrc/launch.cuh; sm_90+, QUIPKERN_PDL != 0):
  // the kernel's weight prefetch overlaps the kernel before it.  It pays when that kernel
  // triggers early, as rht_launch's do (the layer's T_in); after a plain kernel it measured
  // slower on the H100 (session 6), so the default is off.  Honoured at M·K·2 <= 32 KB
  // (x staged in shared memory), otherwise a plain launch.
  bool pdl = false;
  // Where x is staged in shared memory (M <= 8, M·K·2 <= 32 KB): multiply on integer tensor
  // cores, x as 15-bit fixed point per row (x·2^e rounded, 2^13 <= max < 2^14: exact for
  // elements within 2^6 of the row's largest, else 2^-15 of it; csrc/linear_2bit.cu).
  // Faster at M = 1 only (H100: as fast at M = 2, up to 22 % slower at M = 4); the torch
  // op sets it for M = 1.
  // false: fp16/bf16 mma on x as it is (the kernel used at M > 8 and for larger x).
  bool fixed_x = true;
};

constexpr int kGemv2bitMaxM = 16;

// Decode: M in [1, 16].
Status linear_2bit_gemv_launch(const Linear2bitParams& p, cudaStream_t stream);

// W1.58A8 decode (docs/FORMATS.md, "Ternary weights", 2-bit packing): exact int32
//   acc[b, n] = sum_k q[b, k] · (c[n, k] − 1)        (a code 3 counts as +2)
// for int8 activations q (M, K), M <= 16, K <= 2^22 (so that the int32 sums are exact).
// y is acc, or with act_scale the W1.58A8 layer's epilogue in the same kernel:
//   y[b, n] = (acc[b, n] · act_scale[b]) · scale[n] (+ bias[n])
// every step in float32, correctly rounded, y rounded once to dtype (fp16/bf16).  One
// launch; the weights are read once.
struct TernaryInt8Params {
  const int8_t* q = nullptr;        // (M, K), rows q_row_stride bytes apart (a multiple of 16), 16-byte aligned
  int64_t q_row_stride = 0;
  void* y = nullptr;                // (M, N) int32, or in dtype with act_scale; rows y_row_stride elements apart
  int64_t y_row_stride = 0;
  const int32_t* packed = nullptr;  // (N, K/16), 16-byte aligned
  int M = 0, N = 0, K = 0;
  const float* act_scale = nullptr;  // (M,) the rows' scales s_b; nullptr: y is acc
  const float* scale = nullptr;      // with act_scale: row n's at scale[n · scale_stride] (stride 0: per tensor)
  int64_t scale_stride = 1;
  const void* bias = nullptr;        // with act_scale: (N,) in dtype, or nullptr
  DType dtype = DType::kBF16;        // with act_scale: y's (and bias's) type, kF16 or kBF16
};

constexpr int kTernaryInt8GemvMaxM = 16;
constexpr int kTernaryInt8GemvMaxK = 1 << 22;

Status ternary_int8_gemv_launch(const TernaryInt8Params& p, cudaStream_t stream);

// The W1.58A8 layer's decode step in one kernel (docs/FORMATS.md, "Ternary weights", 2-bit
// packing): each row of x quantized as the reference does, then the exact integer product
// and the scales,
//   s_b = max_k |x[b, k]| / Q (1 for a zero row),  q = clamp(round_half_even(x / s_b), ±Q)
//   y[b, n] = (sum_k q[b, k] · (c[n, k] − 1)) · s_b · scale[n] (+ bias[n])
// every step in float32, correctly rounded, and y rounded once to x's dtype.  A row with a
// NaN or an infinity gives NaN outputs.  M·K <= 16384 (x is staged in shared memory).
struct TernaryA8Params {
  const void* x = nullptr;          // (M, K) fp16/bf16, rows x_row_stride elements apart (a multiple of 8), 16-byte aligned
  int64_t x_row_stride = 0;
  void* y = nullptr;                // (M, N) in x's dtype, rows y_row_stride elements apart
  int64_t y_row_stride = 0;
  const int32_t* packed = nullptr;  // (N, K/16), 16-byte aligned
  const float* scale = nullptr;     // row n's scale at scale[n · scale_stride] (stride 0: per tensor)
  int64_t scale_stride = 1;
  const void* bias = nullptr;       // (N,) in x's dtype, or nullptr
  int M = 0, N = 0, K = 0;
  int qmax = 127;                   // 127 (A8) or 7 (A4, held in int8)
  DType dtype = DType::kBF16;
  bool pdl = false;                 // as Linear2bitParams::pdl
};

constexpr int kTernaryA8GemvMaxM = 8;

Status ternary_a8_gemv_launch(const TernaryA8Params& p, cudaStream_t stream);

}  // namespace quipkern
