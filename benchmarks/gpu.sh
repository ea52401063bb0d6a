#!/usr/bin/env bash
# The GPU check, in one run: install the gpu extra, run the GPU tests (pytest -m gpu), then time
# an epoch of the benchmark MLP and CNN on the GPU, on the CPU and with PyTorch on CUDA (when
# torch with CUDA is installed or installable) and print one table (benchmarks/bench_gpu.py).
#
#   bash benchmarks/gpu.sh [bench_gpu.py options, e.g. --cpu-samples 3000 --json gpu.json]
#
# Exit status: the tests' when they fail, else the benchmark's (2: no GPU).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}

echo "== the gpu extra"
if ! $PY -c "import cupy" 2>/dev/null; then
    $PY -m pip install -q -e ".[gpu]" || { echo "cannot install dlcli[gpu] (cupy)"; exit 2; }
fi
$PY - <<'PY' || exit 2
import cupy
from dlcli.core.backend import check_cupy_version
check_cupy_version(cupy.__version__)
n = cupy.cuda.runtime.getDeviceCount()
name = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode() if n else "-"
print(f"cupy {cupy.__version__}, CUDA runtime {cupy.cuda.runtime.runtimeGetVersion()}, "
      f"{n} device(s): {name}")
PY

echo "== pytest -m gpu"
$PY -m pytest -m gpu -q -p no:cacheprovider -rs tests/gpu
tests=$?

echo "== PyTorch on CUDA (for comparison only)"
if ! $PY -c "import torch, sys; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
    $PY -m pip install -q torch 2>/dev/null || echo "torch is not installable here"
fi

echo "== one epoch each"
$PY benchmarks/bench_gpu.py "$@"
bench=$?

echo "pytest -m gpu: exit $tests; bench_gpu.py: exit $bench"
if [ "$tests" -ne 0 ]; then exit "$tests"; fi
exit "$bench"
