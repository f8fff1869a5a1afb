# Sourced by the GPU scripts, from the repo root: xtuner's carried dependencies (.whl, from
# ../shared/gpu/prepare-wheels.sh) installed once into /tmp/site. PYTHONPATH is each script's
# choice: XTuner 0.2.0's runs must not see /tmp/site. (tests/gpu/xtuner_cli.py runs xtuner
# as on a smaller card.)
export PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=9.0  # DeepSpeed's JIT cannot parse "9.0a"
if [ ! -d /tmp/site ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl > /dev/null
fi
