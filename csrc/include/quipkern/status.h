// quipkern: status codes returned by every host entry point in csrc/.
// The kernels never throw; the torch binding (csrc/bindings.cpp) turns codes into errors.
#pragma once

namespace quipkern {

enum class Status : int {
  kOk = 0,
  kInvalidArgument = 1,   // a null pointer, a bad size, or a precondition of the kernel
  kUnsupported = 2,       // a size or dtype this kernel family was not built for
  kMisaligned = 3,        // a pointer or stride that breaks the kernel's vector accesses
  kCudaError = 4,         // a CUDA API call or launch failed (see cudaGetLastError)
};

inline const char* status_string(Status s) {
  switch (s) {
    case Status::kOk: return "ok";
    case Status::kInvalidArgument: return "invalid argument";
    case Status::kUnsupported: return "unsupported size or dtype";
    case Status::kMisaligned: return "misaligned pointer or stride";
    case Status::kCudaError: return "CUDA error";
  }
  return "unknown status";
}

// Element types of activations.
enum class DType : int { kF16 = 0, kBF16 = 1, kF32 = 2 };

inline int dtype_size(DType t) { return t == DType::kF32 ? 4 : 2; }

}  // namespace quipkern
