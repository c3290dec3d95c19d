// quipkern: 2-bit weight -> dense (docs/FORMATS.md, "2-bit weights"), for the prefill
// path (M > 16), where cuBLAS multiplies the dense weight.
//
// The kernel is a copy that widens: it reads 1/8 (bf16 out) of what it writes, so its
// time is its writes.  A thread takes one word (16 consecutive columns of a row, one
// group's scale and zero since g is 64, 128 or K) and writes its 16 values as 16-byte
// vectors; the lanes of a warp take consecutive words, so a warp reads 128 contiguous
// bytes and writes 1 KB (bf16) contiguous.  Each block owns kRows rows of one 256-word
// strip, so the scale index needs no division per word.

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "quipkern/dequantize_2bit.h"

namespace quipkern {
namespace {

constexpr int kThreads = 256;  // words of a row a block covers
constexpr int kRows = 4;       // rows a block covers (more bytes in flight per thread)

template <typename T> __device__ __forceinline__ T cast_to(float v);
template <> __device__ __forceinline__ float cast_to(float v) { return v; }
template <> __device__ __forceinline__ __half cast_to(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 cast_to(float v) { return __float2bfloat16_rn(v); }

__device__ __forceinline__ float half_bits(uint16_t v) { return __half2float(__ushort_as_half(v)); }

template <typename T>
__global__ void __launch_bounds__(kThreads) dequantize_2bit_kernel(const Dequantize2bitParams p) {
  const int KW = p.K / 16, G = p.K / p.group_size;
  const int w = blockIdx.x * kThreads + threadIdx.x;  // word (column block) of the row
  if (w >= KW) return;
  const int grp = (16 * w) / p.group_size;
  for (int64_t r0 = int64_t(blockIdx.y) * kRows; r0 < p.N; r0 += int64_t(gridDim.y) * kRows) {
    uint32_t words[kRows];
    float s[kRows], z[kRows];
#pragma unroll
    for (int i = 0; i < kRows; ++i) {  // all loads first: kRows words and scales in flight
      const int64_t row = min(r0 + i, int64_t(p.N) - 1);
      words[i] = __ldg(reinterpret_cast<const uint32_t*>(p.packed) + row * KW + w);
      s[i] = half_bits(__ldg(p.scales + row * G + grp));
      z[i] = p.zeros != nullptr ? half_bits(__ldg(p.zeros + row * G + grp)) : 1.5f;
    }
#pragma unroll
    for (int i = 0; i < kRows; ++i) {
      const int64_t row = r0 + i;
      if (row >= p.N) break;
      // 16 values as 16-byte vectors: 2 (half/bf16) or 4 (float)
      constexpr int kPerVec = 16 / sizeof(T);
      uint4 out[16 / kPerVec];
      T* v = reinterpret_cast<T*>(out);
#pragma unroll
      for (int j = 0; j < 16; ++j) v[j] = cast_to<T>((float((words[i] >> (2 * j)) & 3u) - z[i]) * s[i]);
      uint4* dst = reinterpret_cast<uint4*>(static_cast<T*>(p.out) + row * p.out_row_stride + 16 * int64_t(w));
#pragma unroll
      for (int q = 0; q < 16 / kPerVec; ++q) dst[q] = out[q];
    }
  }
}

template <typename T>
Status launch(const Dequantize2bitParams& p, cudaStream_t stream) {
  const int KW = p.K / 16;
  const unsigned rows_blocks = unsigned(std::min<int64_t>((int64_t(p.N) + kRows - 1) / kRows, 65535));
  dequantize_2bit_kernel<T><<<dim3((KW + kThreads - 1) / kThreads, rows_blocks), kThreads, 0, stream>>>(p);
  return cudaGetLastError() == cudaSuccess ? Status::kOk : Status::kCudaError;
}

}  // namespace

Status dequantize_2bit_launch(const Dequantize2bitParams& p, cudaStream_t stream) {
  if (p.packed == nullptr || p.scales == nullptr || p.out == nullptr) return Status::kInvalidArgument;
  if (p.N < 1 || p.K < 64 || p.K % 64 || p.out_row_stride < p.K) return Status::kInvalidArgument;
  if (!(p.group_size == 64 || p.group_size == 128 || p.group_size == p.K)) return Status::kUnsupported;
  // words are read as 32-bit loads; values written as 16-byte vectors
  if (reinterpret_cast<uintptr_t>(p.packed) % 4 || reinterpret_cast<uintptr_t>(p.out) % 16 ||
      (p.out_row_stride * dtype_size(p.dtype)) % 16)
    return Status::kMisaligned;
  switch (p.dtype) {
    case DType::kF16: return launch<__half>(p, stream);
    case DType::kBF16: return launch<__nv_bfloat16>(p, stream);
    case DType::kF32: return launch<float>(p, stream);
  }
  return Status::kUnsupported;
}

}  // namespace quipkern
