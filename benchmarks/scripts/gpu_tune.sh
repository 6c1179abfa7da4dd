set -x
nvidia-smi --query-gpu=name --format=csv,noheader
PYTHONPATH=. timeout 300 python3 -m pytest -q -x tests/backends/test_gpu.py -m gpu -p no:cacheprovider 2>&1 | tail -25
PYTHONPATH=. timeout 250 python3 benchmarks/attention.py --ns 8192 --reps 10 --impls tlir_flash,naive_xla,pallas_triton,tlir_128x128,tlir_64x64,tlir_128x64w4,tlir_128x128w4,tlir_xla --tlir-blocks 128x128,64x64,128x64w4,128x128w4,xla --json $OUT/tune.json 2>$OUT/tune.err | tail -30
tail -5 $OUT/tune.err
