# Source this: installs what building kioku with `--features cuda` needs, from
# NVIDIA's PyPI wheels, into $1 (default $KIOKU_CACHE/cuda), and exports the
# environment candle's build scripts look for. No system CUDA toolkit and no
# GPU are needed to build; the binary loads the driver (libcuda) at run time.
#
#   source scripts/cuda-toolchain.sh [DIR] && cargo build --release --features cuda
#
# nvcc is pinned to the oldest 13.0 release: cudarc 0.19 accepts CUDA 11.4 to
# 13.4, and PTX from an nvcc newer than the driver (CUDA 13.0 on the GPU
# machines this is for) does not load. The libraries come at their 13.0 releases too.
CUDA_WHEELS=(
    nvidia-cuda-nvcc==13.0.48   # nvcc, ptxas, fatbinary, cudafe++
    nvidia-nvvm==13.0.48        # cicc, which nvcc runs on every .cu file
    nvidia-cuda-crt==13.0.48    # crt/host_config.h and the other headers nvcc includes
    nvidia-cuda-cccl==13.0.50   # libcu++ headers (cuda/std/...)
    nvidia-cuda-runtime==13.0.48
    nvidia-cuda-nvrtc==13.0.48
    nvidia-cublas==13.0.0.19
    nvidia-curand==10.4.0.35
)
cuda_dir=${1:-${KIOKU_CACHE:-$HOME/.cache/kioku}/cuda}
stamp="$cuda_dir/.installed-$(printf '%s ' "${CUDA_WHEELS[@]}" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    echo "installing the CUDA 13.0 build tools from PyPI into $cuda_dir" >&2
    rm -rf "$cuda_dir" &&
        python3 -m venv "$cuda_dir/venv" &&
        "$cuda_dir/venv/bin/pip" install -q --no-deps --target "$cuda_dir/wheels" "${CUDA_WHEELS[@]%%#*}" &&
        touch "$stamp" || { echo "cuda-toolchain: installing the wheels failed" >&2; return 1 2>/dev/null || exit 1; }
fi
export CUDA_ROOT="$cuda_dir/wheels/nvidia/cu13"
# The wheels ship versioned libraries only, in lib/: the linker (-lcudart)
# wants the bare names, and some build scripts look in lib64/.
ln -sfn lib "$CUDA_ROOT/lib64"
# nvcc runs cicc from nvvm/bin (nvcc.profile); the nvvm wheel puts it in bin/.
mkdir -p "$CUDA_ROOT/nvvm/bin" && ln -sf ../../bin/cicc "$CUDA_ROOT/nvvm/bin/cicc"
for so in "$CUDA_ROOT"/lib/lib*.so.[0-9]*; do
    ln -sf "$(basename "$so")" "${so%.so.*}.so"
done
# candle 0.11 links the driver (cudarc's `dynamic-linking`), and no wheel has
# libcuda: a stub with every driver function cudarc names lets the link
# finish, and the GPU machine's own libcuda.so.1 is what runs. The stub is on
# the link path only, never on LD_LIBRARY_PATH.
if [ ! -f "$CUDA_ROOT/lib/stubs/libcuda.so" ]; then
    cudarc=$(cargo metadata --format-version 1 --features cuda --locked |
        python3 -c 'import json, sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == "cudarc").rsplit("/", 1)[0])') &&
        mkdir -p "$CUDA_ROOT/lib/stubs" &&
        grep -ohE 'load::<_F>\("cu[A-Za-z0-9_]+"\)' "$cudarc/src/driver/sys/mod.rs" | sort -u |
        sed -E 's/.*"(cu[A-Za-z0-9_]+)".*/void \1(void) {}/' > "$CUDA_ROOT/lib/stubs/libcuda.c" &&
        cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$CUDA_ROOT/lib/stubs/libcuda.so" "$CUDA_ROOT/lib/stubs/libcuda.c" ||
        { echo "cuda-toolchain: cannot build the libcuda link stub" >&2; return 1 2>/dev/null || exit 1; }
fi
export CUDA_PATH="$CUDA_ROOT" CUDA_HOME="$CUDA_ROOT" NVCC="$CUDA_ROOT/bin/nvcc"
export PATH="$CUDA_ROOT/bin:$PATH"
export LIBRARY_PATH="$CUDA_ROOT/lib:$CUDA_ROOT/lib/stubs${LIBRARY_PATH:+:$LIBRARY_PATH}"
export LD_LIBRARY_PATH="$CUDA_ROOT/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# No GPU to ask at build time: the kernels are built for this compute capability.
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
case "$CUDA_COMPUTE_CAP" in
    80 | 86 | 89 | 90) ;;
    *) echo "cuda-toolchain: CUDA_COMPUTE_CAP must be 80, 86, 89 or 90, not $CUDA_COMPUTE_CAP" >&2; return 1 2>/dev/null || exit 1 ;;
esac
