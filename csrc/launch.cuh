// quipkern: kernel launches with programmatic dependent launch (PDL, sm_90 and newer).
//
// A layer at decode is a chain of short kernels (T_in -> GEMV -> T_out), each a few
// microseconds, so the gap between two launches and the GEMV's first DRAM round trip
// are a large part of its time.  With PDL a kernel may start while its predecessor in
// the stream still runs: the GEMV streams its first weight chunks while T_in works, and
// T_out is resident by the time the GEMV ends.  The rht kernels always launch with PDL;
// the GEMV only when its caller says the kernel before it is the layer's T_in
// (Linear2bitParams::pdl), only in its variants that stage x in shared memory, and not
// for long single-wave grids (linear_2bit.cu): after a plain kernel, or another GEMV, it
// measured slower on the H100 (session 6, benchmarks/RESULTS.md).
//
// The contract every kernel launched through launch() keeps:
//   * before pdl_wait() it reads only the layer's constant weights (packed codes,
//     scales, zeros) and writes nothing to global memory;
//   * it calls pdl_wait() before it reads anything a predecessor may write (x, bias,
//     the transform's q and signs) and before its first global write, and reads x and
//     bias with load_cg / load_cg16 (below) or cp.async.cg, never through __ldg;
//   * it may call pdl_launch_dependents() at any point, which only lets the next PDL
//     kernel be scheduled; that one still waits in its pdl_wait() for this grid to
//     complete and its writes to be visible.  The transform calls it at its start (it is
//     short, and the GEMV after it should stream weights meanwhile); the GEMV after its
//     main loop, so that a dependent does not sit on SM slots for the whole GEMV.
// A predecessor that is not PDL-aware (any PyTorch kernel) triggers at its exit, so the
// ordering is then the plain stream order.  QUIPKERN_PDL=0 in the environment turns PDL
// off (read once per process), e.g. to measure what it gains.
#pragma once

#include <cstdlib>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <utility>

namespace quipkern {

__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;");
#endif
}

// Loads of data a predecessor writes (x, bias) go through L2 only (ld.global.cg,
// __ldcg), never the read-only path (__ldg): a kernel launched early may hold lines of
// the buffer from before its predecessor wrote it (seen on the H100: stale x in
// CUDA-graph replays while x was read with __ldg).  pdl_wait()'s memory clobber keeps
// them after the wait.
__device__ __forceinline__ uint4 load_cg16(const void* ptr) { return __ldcg(static_cast<const uint4*>(ptr)); }
template <typename T>
__device__ __forceinline__ T load_cg(const T* ptr) {
  return __ldcg(ptr);
}

// Whether launches on `device` use PDL: compute capability >= 9 and QUIPKERN_PDL != 0.
inline bool pdl_enabled(int device) {
  static const bool env_on = [] {
    const char* e = std::getenv("QUIPKERN_PDL");
    return !(e != nullptr && e[0] == '0');
  }();
  static int known[64] = {};  // 0: not asked yet, 1: yes, 2: no (benign races: same value)
  if (!env_on || device < 0 || device >= 64) return false;
  if (known[device] == 0) {
    int major = 0;
    known[device] = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess &&
                            major >= 9
                        ? 1
                        : 2;
  }
  return known[device] == 1;
}

// The number of SMs of `device` (cached: a host query per launch costs more than a
// decode kernel in eager mode), or 0 when it cannot be read.
inline int sm_count(int device) {
  static int known[64] = {};  // 0: not asked yet (benign races: same value)
  if (device < 0 || device >= 64) return 0;
  if (known[device] == 0 && cudaDeviceGetAttribute(&known[device], cudaDevAttrMultiProcessorCount, device) != cudaSuccess)
    known[device] = 0;
  return known[device];
}

// kernel<<<grid, block, smem, stream>>>(args...) on the current device `device` (the
// caller has it already), with the PDL attribute where enabled and `allow_pdl` (a kernel
// declines it for launches where it measured slower).
template <typename... Params, typename... Args>
cudaError_t launch_on(int device, bool allow_pdl, void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                      cudaStream_t stream, Args&&... args) {
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cfg.attrs = attr;
  cfg.numAttrs = allow_pdl && pdl_enabled(device) ? 1 : 0;
  return cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

// The same on the current device, with PDL wherever it is enabled.
template <typename... Params, typename... Args>
cudaError_t launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                   Args&&... args) {
  int device = 0;
  const cudaError_t e = cudaGetDevice(&device);
  if (e != cudaSuccess) return e;
  return launch_on(device, true, kernel, grid, block, smem, stream, std::forward<Args>(args)...);
}

}  // namespace quipkern
