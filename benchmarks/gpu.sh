#!/usr/bin/env bash
# The GPU measurements of benchmarks/results/*_gpu*.md, as one script for a lent GPU machine
# (the workplace's `device` tool): MNIST files under gpu-data/, wheels (pydantic, pytest) under
# .whl/, results written to $OUT (default benchmarks/results). Each step has its own time limit
# so a slow one cannot take the others' results with it. STEPS picks steps (default: all).
#   tests     the CUDA-graph tests (tests/test_cuda_graphs.py), which only run on a GPU
#   training  benchmarks/training.py: the paper's torchattacks loop (the baseline) vs robustal
#             variants, CUDA graphs and --fast included
#   paper     benchmarks/run_mnist_paper.py with --fast (CUDA graphs), all 5,000 validation images
set -u
OUT=${OUT:-benchmarks/results}
STEPS=${STEPS:-tests training paper}
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
graphs_ok=1
if [[ " $STEPS " == *" tests "* ]]; then
    timeout 180 python3 -m pytest -q -p no:cacheprovider tests/test_cuda_graphs.py 2>&1 | tee "$OUT/cuda_graphs_tests.log" | tail -15
    [ "${PIPESTATUS[0]}" = 0 ] || graphs_ok=0
fi
if [[ " $STEPS " == *" training "* ]]; then
    lenet=torchattacks,fp32,bf16-cl-fold; resnet=torchattacks,bf16-cl-fold
    [ $graphs_ok = 1 ] && lenet=$lenet,fp32-graphs,bf16-cl-fold-graphs,fast && resnet=$resnet,bf16-cl-fold-graphs
    timeout "${TRAINING_SECONDS:-200}" python3 benchmarks/training.py --device auto --data-root "$DATA" \
        --train-images 5000 --epochs 3 --eval-images 5000 --chunk 1000 --eval-batch-size 1000 --variants $lenet \
        --resnet-images 500 --resnet-variants $resnet --out "$OUT/training_gpu_graphs.md"
fi
if [[ " $STEPS " == *" paper "* ]] && [ $graphs_ok = 1 ]; then
    timeout "${PAPER_SECONDS:-270}" python3 benchmarks/run_mnist_paper.py --data-root "$DATA" --fast \
        --run-dir /tmp/mnist_paper --out "$OUT/mnist_paper_gpu_graphs.md"
fi
exit 0
