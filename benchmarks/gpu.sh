#!/usr/bin/env bash
# The GPU measurements of benchmarks/results/*_gpu.md, as one script for a lent GPU machine
# (the workplace's `device` tool): MNIST files under gpu-data/, pydantic wheels under .whl/,
# results written to $OUT (default benchmarks/results). Each step has its own time limit so a
# slow one cannot take the others' results with it.
set -u
OUT=${OUT:-benchmarks/results}
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:src
else
    export PYTHONPATH=src
fi
export PYTHONUNBUFFERED=1
DATA=${DATA:-gpu-data}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
timeout 150 python3 benchmarks/training.py --device auto --data-root "$DATA" --train-images 5000 --epochs 4 \
    --eval-images 5000 --chunk 1000 --eval-batch-size 1000 --variants baseline,fp32,fp32-cl,bf16,bf16-cl-fold \
    --resnet-images 500 --out "$OUT/training_gpu.md"
timeout 120 python3 benchmarks/training.py --device auto --data-root "$DATA" --train-images 5000 --epochs 4 \
    --eval-images 5000 --chunk 1000 --eval-batch-size 1000 --variants baseline,fp32,fp32-compile,bf16-cl-compile \
    --resnet-images 0 --out "$OUT/training_gpu_compile.md"
timeout "${PAPER_SECONDS:-270}" python3 benchmarks/run_mnist_paper.py --data-root "$DATA" \
    --run-dir /tmp/mnist_paper --out "$OUT/mnist_paper_gpu.md"
exit 0
