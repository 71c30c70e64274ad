#!/usr/bin/env bash
# The GPU figures of the speed work (docs/speed.md, "Not measured yet"), for a lent GPU machine (the device
# tool), where nothing can be downloaded: the packages it lacks, the JPEG CIFAR-10 and airbench94_muon's source
# travel in .device/, which git ignores.
#
#   bash benchmarks/gpu_figures.sh prepare PATH/airbench94_muon.py   # here, once: fills .device/
#   bash benchmarks/gpu_figures.sh fast94 muon                        # there, carrying .device: those parts
#
# Parts, each one command of benchmarks/:
#   fast94, muon, fast95, fast96   a recipe over 5 seeds beside airbench's own on the same images and seeds
#                                  (fast94_muon beside airbench94_muon, from its public source)
#   compile                        fast94 with trainer.compile=true, 3 seeds (eager: the fast94 part)
#   overhead                       loop_overhead.py at airbench94's width and batch, and its profile
#   sweep                          sweep_throughput.py with 1, 2 and 4 jobs on the GPU
# Each part writes its JSON, and all parts one log (gpu_figures.log), into $OUT: the folder the device tool
# brings back (benchmarks/results/ where OUT is unset). SEEDS and EXTRA (runner overrides for every run) resize
# the runs for a try on a CPU, one kind of data at a time: the recipes train on the JPEG CIFAR-10
# (SEEDS=1 EXTRA="data.subset=500 data.test_subset=500 trainer.epochs=1" ... compile), overhead and sweep on
# synthetic images (EXTRA="data.train_size=1024 data.batch_size=512" ... overhead sweep).
set -euo pipefail
cd "$(dirname "$0")/.."
STORE=.device
DATA="data=folder data.root=$STORE/cifar10-jpeg.tar.gz"

prepare() {
    local source=${1:-}
    if [ ! -f "$source" ]; then
        echo "prepare needs the path of airbench94_muon.py (github.com/KellerJordan/cifar10-airbench)" >&2
        exit 2
    fi
    mkdir -p "$STORE/wheels" .git/info
    grep -qx "/$STORE/" .git/info/exclude 2>/dev/null || echo "/$STORE/" >> .git/info/exclude
    # What the machine's Python 3.12 lacks: Hydra and OmegaConf (pure Python wheels), the joblib launcher of
    # the sweep part; antlr4 and airbench come as source only, so they are built into wheels here.
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 -d "$STORE/wheels" \
        "hydra-core>=1.3.2,<1.4" "omegaconf>=2.3,<2.4" "hydra-joblib-launcher==1.2.0"
    python3 -m pip wheel -q --no-deps -w "$STORE/wheels" "antlr4-python3-runtime==4.9.3" "airbench==0.1.8"
    install -m 644 ../shared/data/cifar10-jpeg.tar.gz "$STORE/cifar10-jpeg.tar.gz"
    install -m 644 "$source" "$STORE/airbench94_muon.py"
    du -sh "$STORE"
}

if [ "${1:-}" = prepare ]; then
    shift
    prepare "$@"
    exit
fi
if [ $# -eq 0 ]; then
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
    exit 2
fi
for part in "$@"; do
    case $part in
        fast94 | muon | fast95 | fast96 | compile | overhead | sweep) ;;
        *) echo "unknown part: $part (see bash benchmarks/gpu_figures.sh)" >&2 && exit 2 ;;
    esac
done
if [ ! -f "$STORE/cifar10-jpeg.tar.gz" ]; then
    echo "$STORE/ is not prepared: bash benchmarks/gpu_figures.sh prepare PATH/airbench94_muon.py" >&2
    exit 2
fi

OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"

measure() {
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/gpu-figures-site "$STORE"/wheels/*.whl
    export PYTHONPATH=/tmp/gpu-figures-site:$PWD PYTHONUNBUFFERED=1
    SEEDS=${SEEDS:-5}
    read -r -a extra <<< "${EXTRA:-}"
    read -r -a overrides <<< "$DATA ${EXTRA:-}"
    echo "$(date -u '+%F %T') UTC, $(git rev-parse --short HEAD 2>/dev/null || echo 'no git'), parts: $*"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
    python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'

    for part in "$@"; do
        started=$SECONDS
        echo "== $part, from $(date -u +%T)"
        case $part in
            fast94 | fast95 | fast96)
                python3 benchmarks/time_to_accuracy.py "experiment=$part" --seeds "$SEEDS" \
                    --reference "airbench${part#fast}" --output "$OUT/$part.json" -- "${overrides[@]}" ;;
            muon)
                python3 benchmarks/time_to_accuracy.py experiment=fast94_muon --seeds "$SEEDS" \
                    --reference airbench94_muon --reference-source "$STORE/airbench94_muon.py" \
                    --output "$OUT/muon.json" -- "${overrides[@]}" ;;
            compile)
                python3 benchmarks/time_to_accuracy.py experiment=fast94 --seeds $((SEEDS < 3 ? SEEDS : 3)) \
                    --output "$OUT/compile.json" -- "${overrides[@]}" trainer.compile=true ;;
            overhead)
                python3 benchmarks/loop_overhead.py data.train_size=50000 data.batch_size=1024 \
                    'model.widths=[64,256,256]' ${extra[@]+"${extra[@]}"} --profile --output "$OUT/overhead.json" ;;
            sweep)
                python3 benchmarks/sweep_throughput.py --jobs-per-gpu 1,2,4 --epochs 10 --output "$OUT/sweep.json" \
                    -- ${extra[@]+"${extra[@]}"} ;;
        esac || echo "== $part failed (exit $?)"
        echo "== $part: $((SECONDS - started)) s"
    done
}

# A pipe rather than exec's redirection, so that the log is whole when the script ends.
measure "$@" 2>&1 | tee -a "$OUT/gpu_figures.log"
