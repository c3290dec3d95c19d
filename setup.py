"""Build quipkern: a pure-Python package, plus the CUDA extension quipkern._C when CUDA
is there (or asked for).

    pip install --no-build-isolation -e .      # build isolation would hide the installed torch

QUIPKERN_CUDA=1   build the extension; a failure is an error
QUIPKERN_CUDA=0   pure-Python install (reference + Triton paths)
unset             build it when torch has CUDA and nvcc is found; a failure is then an
                  error too (never a silent fall-back)
TORCH_CUDA_ARCH_LIST   target GPUs (default "8.0;9.0a": Ampere and Hopper)
"""

import glob
import os
import shutil

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))

# On these machines nvcc sits in /usr/local/bin while the toolkit (cudart) is in
# /usr/local/cuda: torch's builder must be told before it is imported.
if not os.environ.get("CUDA_HOME") and os.path.isdir("/usr/local/cuda"):
    os.environ["CUDA_HOME"] = "/usr/local/cuda"
os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0a")


def want_cuda() -> bool:
    flag = os.environ.get("QUIPKERN_CUDA", "").strip()
    if flag not in ("", "0", "1"):
        raise SystemExit(f"QUIPKERN_CUDA must be 0, 1 or unset; got {flag!r}")
    if flag == "0":
        return False
    try:
        import torch
    except ImportError as e:
        if flag == "1":
            raise SystemExit("QUIPKERN_CUDA=1 but torch is not importable; install torch first "
                             "and build with --no-build-isolation") from e
        print("quipkern: WARNING: torch is not importable in this build environment, so the CUDA "
              "extension is not built; install torch first and use pip install --no-build-isolation")
        return False
    nvcc = shutil.which("nvcc") or (os.environ.get("CUDA_HOME") and
                                    shutil.which("nvcc", path=os.path.join(os.environ["CUDA_HOME"], "bin")))
    if flag == "1":
        if torch.version.cuda is None:
            raise SystemExit(f"QUIPKERN_CUDA=1 but torch {torch.__version__} is a CPU-only build")
        if not nvcc:
            raise SystemExit("QUIPKERN_CUDA=1 but nvcc was not found (set CUDA_HOME)")
        return True
    return torch.version.cuda is not None and bool(nvcc)


def extensions():
    if not want_cuda():
        print("quipkern: building without the CUDA extension (reference + Triton paths)")
        return [], {}
    from torch.utils.cpp_extension import BuildExtension, CUDAExtension

    sources = sorted(glob.glob(os.path.join("csrc", "*.cu"))) + [os.path.join("csrc", "bindings.cpp")]
    ext = CUDAExtension(
        name="quipkern._C",
        sources=sources,
        include_dirs=[os.path.join(HERE, "csrc", "include")],
        # the C++ standard is torch's choice (C++17 up to torch 2.13, C++20 after)
        extra_compile_args={
            "cxx": ["-O3"],
            "nvcc": ["-O3", "--expt-relaxed-constexpr", "-Xptxas=-warn-spills", "-lineinfo"],
        },
    )
    print(f"quipkern: building quipkern._C for TORCH_CUDA_ARCH_LIST={os.environ['TORCH_CUDA_ARCH_LIST']}")
    return [ext], {"build_ext": BuildExtension}


ext_modules, cmdclass = extensions()

setup(
    name="quipkern",
    version="0.1.0",
    description="Fused randomized-Hadamard + 2-bit / ternary matmul kernels for PyTorch (CUDA C++ and Triton)",
    long_description=open(os.path.join(HERE, "README.md")).read() if os.path.exists(os.path.join(HERE, "README.md")) else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["quipkern", "quipkern.*"]),
    python_requires=">=3.10",
    install_requires=["torch>=2.4", "numpy"],
    extras_require={
        "triton": ["triton"],
        "test": ["pytest", "hypothesis", "pytest-benchmark", "triton"],
    },
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    zip_safe=False,
)
