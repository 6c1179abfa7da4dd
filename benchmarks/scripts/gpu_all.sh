# Every GPU measurement of docs/benchmarks.md in one device call (about 8 minutes on an H200):
#   PYTHONPATH=. bash benchmarks/scripts/gpu_all.sh     ($OUT: fwd/bwd/longest tables and rows)
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
export PYTHONPATH=.
timeout 90 python3 -m pytest -q tests/backends/test_gpu.py -m gpu -p no:cacheprovider \
    -W ignore::DeprecationWarning 2>&1 | tail -3
timeout 230 python3 benchmarks/attention.py --ns 2048,8192,32768,65536 --reps 20 \
    --tlir-blocks xla --json $OUT/fwd.json 2>$OUT/fwd.err > $OUT/fwd.md
timeout 130 python3 benchmarks/attention.py --backward --ns 2048,8192,16384 --reps 5 \
    --json $OUT/bwd.json 2>$OUT/bwd.err > $OUT/bwd.md
timeout 70 python3 benchmarks/longest.py --start 131072 --stop 2097152 --impls tlir_flash > $OUT/longest.md 2>&1
timeout 50 python3 benchmarks/longest.py --start 131072 --stop 2097152 --impls tlir_flash --causal >> $OUT/longest.md 2>&1
cat $OUT/fwd.md $OUT/bwd.md $OUT/longest.md
