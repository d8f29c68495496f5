#!/usr/bin/env bash
# The checks of the CUDA path, on a Linux machine with an NVIDIA GPU, from the repository root, in the venv of the
# README's install (PyPI's CUDA build of torch). About 10 minutes on one GPU; what it prints is what
# benchmarks/README.md is to report for that GPU:
#   1. the test suite's smoke tests, on CUDA (every script picks the GPU when there is one; the torchrun tests stay
#      gloo processes on the CPU);
#   2. ppo_atari_multigpu.py under torchrun with NCCL, on 2 GPUs where there are 2 or more, else one process on CUDA;
#   3. whole-process speed of ppo_atari.py and dqn_atari.py on the GPU, fp32 and --bf16.
# Each step runs whatever the one before gave; the exit status says whether all passed.
#
#     bash benchmarks/cuda_check.sh 2>&1 | tee cuda_check.log
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
root=$(pwd)
python -c 'import torch, sys; torch.cuda.is_available() or sys.exit("torch sees no CUDA device: install the CUDA build")' ||
    exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python -c 'import torch; print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, bf16: {torch.cuda.is_bf16_supported()}")'
failed=0
workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT

echo "## 1. smoke tests on CUDA"
python -m pytest -q -m "not learning" -p no:cacheprovider || failed=1

echo "## 2. ppo_atari_multigpu.py, NCCL"
gpus=$(python -c 'import torch; print(min(torch.cuda.device_count(), 2))')
(cd "$workdir" && torchrun --standalone --nproc-per-node "$gpus" "$root/ppo_atari_multigpu.py" \
    --num-envs $((8 * gpus)) --total-timesteps $((4096 * gpus)) --eval-episodes 2) || failed=1

echo "## 3. speed on the GPU (whole process, start-up included, no evaluation)"
timed() {
    local start=$SECONDS
    (cd "$workdir" && python "$@" --eval-episodes 0 >/dev/null) || failed=1
    echo "| $* | $((SECONDS - start)) s |"
}
echo "| command | wall |"
echo "|---|---|"
for precision in "" "--bf16"; do
    timed "$root/ppo_atari.py" --total-timesteps 51200 $precision
    timed "$root/dqn_atari.py" --total-timesteps 30000 --learning-starts 5000 $precision
done
echo "all checks: $([ $failed = 0 ] && echo passed || echo 'FAILED (see above)')"
exit $failed
