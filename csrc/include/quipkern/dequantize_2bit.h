// quipkern: the 2-bit weight of docs/FORMATS.md ("2-bit weights") as a dense (N, K)
// matrix, W[n, k] = s[n, k/g] · (c[n, k] − z[n, k/g]) (z = 1.5 without zeros), for the
// prefill path that multiplies it with cuBLAS.
#pragma once

#include <cstdint>
#include <cuda_runtime.h>

#include "quipkern/status.h"

namespace quipkern {

struct Dequantize2bitParams {
  const int32_t* packed = nullptr;   // (N, K/16), 4-byte aligned
  const uint16_t* scales = nullptr;  // fp16 bits, (N, K/g)
  const uint16_t* zeros = nullptr;   // fp16 bits, (N, K/g), or nullptr: symmetric grid
  void* out = nullptr;               // (N, K) in dtype, rows out_row_stride elements apart, 16-byte aligned
  int64_t out_row_stride = 0;
  int N = 0, K = 0;
  int group_size = 0;                // 64, 128, or K
  DType dtype = DType::kBF16;        // kF16, kBF16 or kF32
  // Fold a transform's dense factor Q (m × m, row-major fp32, m <= 32; nullptr: none) into
  // the result: out = (Qᵀ ⊗ I_{N/m}) · W (fold_in false) or W · (Q ⊗ I_{K/m}) (fold_in,
  // K/m a multiple of 16).  kF16 / kBF16 only.  (quipkern/reference/rht.py, fold_q)
  const float* q = nullptr;
  int m = 1;
  bool fold_in = false;
  // Fold the whole input transform of a power-of-two width K (m = 1, no q) into the
  // result: out = W · (H_K / sqrt(K)) · S_in, i.e. row n of out is S_in · (H_K / sqrt(K)) ·
  // W[n] (H_K is symmetric).  256 <= K <= 32768, kF16 / kBF16, packed 8-byte aligned.
  // (quipkern/reference/rht.py, fold_hadamard)
  bool hadamard_in = false;
  const uint8_t* signs_in = nullptr;  // S_in: ceil(K/8) bytes, 4-byte aligned, or nullptr
};

Status dequantize_2bit_launch(const Dequantize2bitParams& p, cudaStream_t stream);

// The hadamard_in case, which dequantize_2bit_launch hands on: the rht's main kernel
// (csrc/rht.cu) reading the rows of W from the packed codes instead of x.
Status dequantize_2bit_hadamard_launch(const Dequantize2bitParams& p, cudaStream_t stream);

}  // namespace quipkern
