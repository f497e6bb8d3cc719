#!/usr/bin/env bash
# One short, self-contained check of clf on a machine with an NVIDIA GPU (about 5 minutes).
#
#   bash benchmarks/gpu_check.sh [REPO_DIR]
#
# REPO_DIR is a clf checkout (default: this script's repository). Installs into a fresh
# virtualenv under $TMPDIR:
#   - TensorFlow with CUDA: from REPO_DIR/wheels/ when that folder exists (offline
#     machines: put tensorflow*.whl and its nvidia-* dependency wheels there), otherwise
#     from the package index as `tensorflow[and-cuda]`. A TensorFlow that already sees the
#     GPU in the system Python is reused instead (--system-site-packages).
#   - clf itself from REPO_DIR, without build isolation.
# Then prints, for vgg16 at 224x224 on generated images, float32 vs mixed_float16:
# raw backbone forward, clf extraction and clf training throughput (images/s) and their
# ratios (benchmarks/gpu_throughput.py explains each number); then clf's extraction img/s on
# one GPU and split over every local GPU (benchmarks/extraction_scaling.py replicas).
set -euo pipefail

REPO="$(cd "${1:-$(dirname "$0")/..}" && pwd)"
PY="${PYTHON:-python3}"
VENV="${TMPDIR:-/tmp}/clf-gpu-check-venv"
start=$(date +%s)

echo "== clf GPU check: repo $REPO"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "nvidia-smi not found"

if "$PY" -c "import tensorflow as tf, sys; sys.exit(0 if tf.config.list_physical_devices('GPU') else 1)" 2>/dev/null; then
    echo "== reusing the system TensorFlow, which sees the GPU"
    "$PY" -m venv --system-site-packages "$VENV"
    PIP_TF=()
else
    "$PY" -m venv "$VENV"
    if ls "$REPO"/wheels/tensorflow*.whl >/dev/null 2>&1; then
        PIP_TF=(--no-index --find-links "$REPO/wheels" "tensorflow[and-cuda]")
    else
        PIP_TF=("tensorflow[and-cuda]>=2.16")
    fi
fi
"$VENV/bin/python" -m pip install -q --upgrade pip setuptools wheel 2>/dev/null || true
if ((${#PIP_TF[@]})); then
    echo "== installing ${PIP_TF[*]}"
    "$VENV/bin/python" -m pip install -q "${PIP_TF[@]}"
fi
# clf's other dependencies (keras, pluggy, typer, rich, pillow, ...): from the wheels folder
# when there is one, else from the index; then clf itself from the repo folder.
if [ -d "$REPO/wheels" ]; then FIND=(--find-links "$REPO/wheels"); else FIND=(); fi
"$VENV/bin/python" -m pip install -q "${FIND[@]}" --no-build-isolation "$REPO"

"$VENV/bin/python" - <<'EOF'
import tensorflow as tf
gpus = tf.config.list_physical_devices("GPU")
print("== TensorFlow", tf.__version__, "GPUs:", gpus)
if not gpus:
    raise SystemExit("No GPU visible to TensorFlow: check the driver and the CUDA wheels.")
EOF

cd "$(mktemp -d)"  # clf.run writes nothing outside its temp folders, but keep the cwd clean
timeout 270 "$VENV/bin/python" "$REPO/benchmarks/gpu_throughput.py" \
    --backbone vgg16 --size 224 --images 512 --batch 64 --epochs 3 --repeats 10 \
    --precisions float32,mixed_float16
timeout 150 "$VENV/bin/python" "$REPO/benchmarks/extraction_scaling.py" replicas \
    --backbone vgg16 --size 224 --images 512 --batch 64 --repeats 3
echo "== done in $(( $(date +%s) - start ))s"
