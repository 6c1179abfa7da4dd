# The GPU forward table of docs/benchmarks.md, in one device call:
#   run: bash benchmarks/scripts/gpu_forward.sh   (writes $OUT/fwd.json, $OUT/fwd.md)
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
PYTHONPATH=. python3 benchmarks/attention.py --ns 2048,8192,32768,65536 --reps 10 \
    --tlir-blocks xla --json $OUT/fwd.json 2>$OUT/fwd.err | tee $OUT/fwd.md
