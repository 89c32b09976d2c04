#!/usr/bin/env bash
# Builds benchmarks/onednn/_onednn_conv.so, the oneDNN FFI prototype (issue 21). Never run by CI.
#
#   pip install onednn-cpu-gomp==2023.2.0 onednn-devel-cpu-gomp==2023.2.0   # oneDNN 3.2, GNU OpenMP
#   bash benchmarks/onednn/build.sh            # PYTHON=... to pick another interpreter
#
# Needs g++ (C++17). The headers come from jax (`jax.ffi.include_dir()`) and from the
# onednn-devel wheel, which installs them under the environment's `include/` (its libdnnl.so
# under `lib/`); the library is linked with an rpath to that directory.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python="${PYTHON:-python}"
ffi_include="$("$python" -c 'import jax.ffi; print(jax.ffi.include_dir())')"
prefix="$("$python" -c 'import sys; print(sys.prefix)')"
if [ ! -e "$prefix/include/oneapi/dnnl/dnnl.hpp" ] || [ ! -e "$prefix/lib/libdnnl.so" ]; then
  echo "oneDNN not found under $prefix: pip install onednn-cpu-gomp onednn-devel-cpu-gomp" >&2
  exit 1
fi
g++ -O2 -std=c++17 -shared -fPIC \
  -isystem "$ffi_include" -isystem "$prefix/include" "$here/conv_ffi.cc" \
  -L"$prefix/lib" -ldnnl -Wl,-rpath,"$prefix/lib" -o "$here/_onednn_conv.so"
echo "built $here/_onednn_conv.so"
