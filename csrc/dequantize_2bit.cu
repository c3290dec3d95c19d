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

#include "ptx.cuh"
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

// Folding (Dequantize2bitParams::q).  Output chunk a at a place is sum_a' Q[a', a] · input
// chunk a' at the same place (rows a·P + b, or columns c·P + d), so a block takes one
// "line" (row b of every chunk; or row n) and walks its places a tile at a time, staging
// the m rows of packed words of a tile in shared memory while the next tile's words and
// scales load into registers.  A warp owns a quarter of a tile, in 128-place runs of two
// 64-place epochs, each epoch in one scale group of every chunk.  Per 16 places (one word
// of every chunk) it computes, on tensor cores,
//     D[place, a] = sum_a' C[place, a'] · B[a', a],   B = diag(s)·Q  (bf16 hi + lo: 2^-16)
// with the codes C as the mma's A operand (exact in bf16): C - 1.5 for the symmetric grid,
// or C and then minus the bias z·B with zeros.  Places are the mma's 16 rows, so m ≤ 8
// chunks waste at most the n8 tile's spare columns (m16n8k8; k16 steps for m ≤ 16, 32).
// Row r of the mma is place 2r (r < 8) or 2(r - 8) + 1: a lane's two rows are neighbouring
// places, one nibble of a word, and its results for them pack into one 32-bit store.
// A warp's results pass through its own shared-memory tile so that rows leave as 16-byte
// vectors.  (H100, 28672 x 8192: 232-325 µs on different machines against the plain
// kernel's 200; without the products it runs at the plain kernel's speed, so the rest is
// the products' latency.  benchmarks/NOTES.md, session 16.)
//
//   m rows of words --> regs --> smem --(nibble -> bf16 pairs, prmt)--> A --mma (hi, lo)--> D --> smem --> rows
//                       (next tile's, in flight during this tile's products)
constexpr int kFoldWarps = 4;
constexpr int kFoldThreads = 32 * kFoldWarps;
// places a tile: 1024 (a warp's 256 in two runs of 128 through its staging tile), 512 at
// 32 chunks (its registers)
__host__ __device__ constexpr int fold_places(int chunks) { return chunks == 32 ? 512 : 1024; }
constexpr int kFoldOutRow = 128 + 8;                 // a warp's staged row (16-byte multiple, padded)
constexpr int kFoldBlocks = 4096;                    // tiles are split over grid.y up to this many blocks

// bf16 bits of code c as bytes 2c, 2c + 1 of (lo, hi): 0, 1, 2, 3 (with zeros) or c - 1.5
constexpr uint32_t kCodesLo = 0x3F800000u, kCodesHi = 0x40404000u;
constexpr uint32_t kCentredLo = 0xBF00BFC0u, kCentredHi = 0x3FC03F00u;

// Codes of rows a', a' + 1 at places 2 g8 and 2 g8 + 1 (the nibble at 4 g8 of words w0, w1)
// as the bf16 pairs (a', a' + 1) of each place: byte-permutes of the 8-byte code table.
__device__ __forceinline__ void code_pairs(uint32_t w0, uint32_t w1, int sh, uint32_t lo, uint32_t hi, uint32_t& p0,
                                           uint32_t& p1) {
  const uint32_t x = ((w0 >> sh) & 0xFu) | (((w1 >> sh) & 0xFu) << 8);
  // selector nibbles 2c, 2c + 1 for c of row a' (low half) and of row a' + 1 (high half)
  p0 = __byte_perm(lo, hi, (x & 0x303u) * 0x22u + 0x1010u);
  p1 = __byte_perm(lo, hi, ((x >> 2) & 0x303u) * 0x22u + 0x1010u);
}

template <typename T> __device__ __forceinline__ uint32_t pack2(float a, float b);
template <> __device__ __forceinline__ uint32_t pack2<__half>(float a, float b) {
  return uint32_t(__half_as_ushort(__float2half_rn(a))) | (uint32_t(__half_as_ushort(__float2half_rn(b))) << 16);
}
template <> __device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float a, float b) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(a, b);
  return *reinterpret_cast<const uint32_t*>(&v);
}

// kK: chunks padded (8, 16 or 32; m ≤ kK).  P: chunk length; span: places a line has (K,
// or P when folding columns).
template <typename T, int kK>
__global__ void __launch_bounds__(kFoldThreads, 4) dequantize_2bit_fold_kernel(const Dequantize2bitParams p, int P,
                                                                           int span) {
  constexpr int kRows = kK;
  constexpr int kPlaces = fold_places(kK), kWarpPlaces = kPlaces / kFoldWarps, kEpochs = kPlaces / 64;
  constexpr int kRowWords = kPlaces / 16 + 1;  // padded: rows 2 apart fall in other banks
  constexpr int kNT = kK / 8;     // n8 tiles of output chunks a
  constexpr int kPairs = kK / 8;  // pairs of input chunks (a' = 2 t + 8 i, + 1) a lane holds
  constexpr int kWordsPerThread = kRows * (kPlaces / 16) / kFoldThreads;  // a warp loads whole rows
  constexpr int kScalesPerThread = (kRows * kEpochs + kFoldThreads - 1) / kFoldThreads;
  __shared__ uint32_t words[kRows][kRowWords];
  __shared__ float qs[kRows][kRows + 1];  // qs[a'][a] = Q[a'][a]
  __shared__ float ss[kRows][kEpochs], szs[kRows][kEpochs];
  __shared__ float biases[kRows][kEpochs];  // (z·B)[a] of each epoch (with zeros)
  __shared__ alignas(16) T outs[kFoldWarps][kRows][kFoldOutRow];
  const int m = p.m, KW = p.K / 16, G = p.K / p.group_size;
  const int64_t line = blockIdx.x;
  const bool fold_in = p.fold_in, has_zeros = p.zeros != nullptr;
  const uint32_t tlo = has_zeros ? kCodesLo : kCentredLo, thi = has_zeros ? kCodesHi : kCentredHi;
  const int tiles = (span + kPlaces - 1) / kPlaces;
  auto row_of = [&](int a) -> int64_t { return fold_in ? line : int64_t(a) * P + line; };
  auto col_of = [&](int a, int j) -> int { return fold_in ? a * P + j : j; };

  uint32_t pw[kWordsPerThread];
  float ps[kScalesPerThread], pz[kScalesPerThread];
  auto load_tile = [&](int j0) {  // this thread's words and scales of the tile at j0, into registers
#pragma unroll
    for (int k = 0; k < kWordsPerThread; ++k) {
      const int i = threadIdx.x + kFoldThreads * k, a = i / (kPlaces / 16), w = i % (kPlaces / 16);
      pw[k] = a < m && j0 + 16 * w < span
                  ? __ldg(reinterpret_cast<const uint32_t*>(p.packed) + row_of(a) * KW + col_of(a, j0) / 16 + w)
                  : 0u;
    }
#pragma unroll
    for (int k = 0; k < kScalesPerThread; ++k) {
      const int i = threadIdx.x + kFoldThreads * k, a = i / kEpochs, e = i % kEpochs;
      ps[k] = 0.f;
      pz[k] = 0.f;
      if (a < m && j0 + 64 * e < span) {
        const int64_t g = row_of(a) * G + col_of(a, j0 + 64 * e) / p.group_size;
        ps[k] = half_bits(__ldg(p.scales + g));
        if (has_zeros) pz[k] = half_bits(__ldg(p.zeros + g));
      }
    }
  };

  for (int i = threadIdx.x; i < kRows * kRows; i += kFoldThreads) {
    const int a2 = i / kRows, a = i % kRows;
    qs[a2][a] = a2 < m && a < m ? p.q[a2 * m + a] : 0.f;
  }
  int t = blockIdx.y;
  if (t < tiles) load_tile(t * kPlaces);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g8 = lane >> 2, t2 = 2 * (lane & 3);
  T(*ot)[kFoldOutRow] = outs[warp];
  for (; t < tiles; t += gridDim.y) {
    const int j0 = t * kPlaces;
    __syncthreads();  // the last tile's words, scales and biases are read
#pragma unroll
    for (int k = 0; k < kWordsPerThread; ++k) {
      const int i = threadIdx.x + kFoldThreads * k;
      words[i / (kPlaces / 16)][i % (kPlaces / 16)] = pw[k];
    }
#pragma unroll
    for (int k = 0; k < kScalesPerThread; ++k) {
      const int i = threadIdx.x + kFoldThreads * k;
      if (i < kRows * kEpochs) {
        ss[i / kEpochs][i % kEpochs] = ps[k];
        szs[i / kEpochs][i % kEpochs] = ps[k] * pz[k];
      }
    }
    if (t + int(gridDim.y) < tiles) load_tile((t + gridDim.y) * kPlaces);  // lands during this tile
    __syncthreads();
    if (has_zeros) {
      for (int i = threadIdx.x; i < kRows * kEpochs; i += kFoldThreads) {
        const int a = i / kEpochs, e = i % kEpochs;
        float b = 0.f;
        for (int a2 = 0; a2 < kRows; ++a2) b = fmaf(qs[a2][a], szs[a2][e], b);
        biases[a][e] = b;
      }
      __syncthreads();
    }

    for (int run = 0; run < kWarpPlaces / 128; ++run) {
      const int jw = j0 + kWarpPlaces * warp + 128 * run;  // the run's first place
      if (jw >= span) break;
      for (int eh = 0; eh < 2; ++eh) {
        const int e = (jw - j0) / 64 + eh;
        if (j0 + 64 * e >= span) break;
        // B fragments: rows a' = 2 t + 8 i (+ 1), column a = 8 nt + g8
        uint32_t bhi[kNT][kPairs], blo[kNT][kPairs];
        float bias[kNT][2];  // output chunks a = 8 nt + t2 (+ 1)
#pragma unroll
        for (int nt = 0; nt < kNT; ++nt) {
#pragma unroll
          for (int i = 0; i < kPairs; ++i) {
            const int a = 8 * nt + g8, a2 = t2 + 8 * i;
            ptx::split_bf16(qs[a2][a] * ss[a2][e], qs[a2 + 1][a] * ss[a2 + 1][e], bhi[nt][i], blo[nt][i]);
          }
#pragma unroll
          for (int h = 0; h < 2; ++h) bias[nt][h] = has_zeros ? biases[8 * nt + t2 + h][e] : 0.f;
        }
#pragma unroll
        for (int ws = 0; ws < 4; ++ws) {  // the epoch's words: 16 places each
          const int wl = 4 * e + ws;
          uint32_t a0[kPairs], a1[kPairs];  // places 2 g8 and 2 g8 + 1: pairs of rows a' = 2 t + 8 i (+ 1)
#pragma unroll
          for (int i = 0; i < kPairs; ++i)
            code_pairs(words[t2 + 8 * i][wl], words[t2 + 8 * i + 1][wl], 4 * g8, tlo, thi, a0[i], a1[i]);
          const int col = 64 * eh + 16 * ws + 2 * g8;
#pragma unroll
          for (int nt = 0; nt < kNT; ++nt) {
            float d[4] = {0.f, 0.f, 0.f, 0.f};
            if constexpr (kK == 8) {
              const uint32_t af[2] = {a0[0], a1[0]};
              ptx::mma_bf16_k8(d, af, bhi[nt][0]);
              ptx::mma_bf16_k8(d, af, blo[nt][0]);
            } else {
#pragma unroll
              for (int s = 0; s < kK / 16; ++s) {
                const uint32_t af[4] = {a0[2 * s], a1[2 * s], a0[2 * s + 1], a1[2 * s + 1]};
                ptx::mma_bf16(d, af, bhi[nt][2 * s], bhi[nt][2 * s + 1]);
                ptx::mma_bf16(d, af, blo[nt][2 * s], blo[nt][2 * s + 1]);
              }
            }
            // d0, d1: place 2 g8, chunks a = 8 nt + t2 (+ 1); d2, d3: place 2 g8 + 1
            *reinterpret_cast<uint32_t*>(&ot[8 * nt + t2][col]) = pack2<T>(d[0] - bias[nt][0], d[2] - bias[nt][0]);
            *reinterpret_cast<uint32_t*>(&ot[8 * nt + t2 + 1][col]) = pack2<T>(d[1] - bias[nt][1], d[3] - bias[nt][1]);
          }
        }
      }
      __syncwarp();
      const int vecs = min(16, (span - jw) / 8);  // 16-byte vectors of the warp's run of each row
      for (int i = lane; i < 16 * m; i += 32) {
        const int a = i >> 4, v = i & 15;
        if (v >= vecs) continue;
        const uint4 val = *reinterpret_cast<const uint4*>(&ot[a][8 * v]);
        *reinterpret_cast<uint4*>(static_cast<T*>(p.out) + row_of(a) * p.out_row_stride + col_of(a, jw) + 8 * v) = val;
      }
      __syncwarp();  // the staged rows are read before the next run writes them
    }
  }
}

template <typename T, int kK>
void launch_fold_chunks(const Dequantize2bitParams& p, cudaStream_t stream) {
  const int P = p.fold_in ? p.K / p.m : p.N / p.m;
  const int span = p.fold_in ? P : p.K, lines = p.fold_in ? p.N : P;
  const int tiles = (span + fold_places(kK) - 1) / fold_places(kK);
  // one block a line walks its tiles (prefetching); split them where lines are few
  const int split = std::max(1, std::min(tiles, (kFoldBlocks + lines - 1) / lines));
  const dim3 grid{unsigned(lines), unsigned(split)};
  dequantize_2bit_fold_kernel<T, kK><<<grid, kFoldThreads, 0, stream>>>(p, P, span);
}

template <typename T>
Status launch_fold(const Dequantize2bitParams& p, cudaStream_t stream) {
  if (p.m <= 8)
    launch_fold_chunks<T, 8>(p, stream);
  else if (p.m <= 16)
    launch_fold_chunks<T, 16>(p, stream);
  else
    launch_fold_chunks<T, 32>(p, stream);
  return cudaGetLastError() == cudaSuccess ? Status::kOk : Status::kCudaError;
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
  if (p.hadamard_in) return dequantize_2bit_hadamard_launch(p, stream);
  if (p.q != nullptr) {
    if (p.m < 1 || p.m > 32) return Status::kUnsupported;
    if (p.fold_in ? p.K % p.m : p.N % p.m) return Status::kInvalidArgument;
    // folding columns: whole words a chunk, and each 64-place epoch of a chunk in one scale group
    const int P = p.K / p.m;
    if (p.fold_in && (P % 16 || (P % 64 && p.group_size % P))) return Status::kUnsupported;
    switch (p.dtype) {
      case DType::kF16: return launch_fold<__half>(p, stream);
      case DType::kBF16: return launch_fold<__nv_bfloat16>(p, stream);
      default: return Status::kUnsupported;
    }
  }
  switch (p.dtype) {
    case DType::kF16: return launch<__half>(p, stream);
    case DType::kBF16: return launch<__nv_bfloat16>(p, stream);
    case DType::kF32: return launch<float>(p, stream);
  }
  return Status::kUnsupported;
}

}  // namespace quipkern
