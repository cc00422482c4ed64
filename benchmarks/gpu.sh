#!/usr/bin/env bash
# Every speed benchmark of chapter 8 on a CUDA GPU, unchanged: the scripts synchronise the GPU
# around each timed step and record its name. Writes benchmarks/results/*_cuda.json.
# Usage (from the repository root, on a machine with a GPU):  bash benchmarks/gpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU'; print(torch.cuda.get_device_name())"
python benchmarks/bench_step.py --device cuda --batches 64 256 1024 \
    --json benchmarks/results/step_cuda.json --label cuda
python benchmarks/bench_conv.py --device cuda --forms --json benchmarks/results/conv_cuda.json
python benchmarks/scaling.py --device cuda --threads 1 --batches 32 128 512 \
    --memory-batches 128 512 --json benchmarks/results/scaling_cuda.json
python benchmarks/bench_unet.py --device cuda --threads 1 --batches 16 64 256 \
    --json benchmarks/results/unet_speed_cuda.json
