# Sourced by the GPU scripts, from the repo root: xtuner's carried dependencies (.whl, from
# ../shared/gpu/prepare-wheels.sh) installed once into /tmp/site, and `install_reference`,
# which installs XTuner 0.2.0 and its pins (.whlref, from prepare-wheels.sh --reference) into
# /tmp/ref. PYTHONPATH is each script's choice: XTuner 0.2.0's runs must not see /tmp/site.
# (tests/gpu/xtuner_cli.py runs xtuner as on a smaller card.)
export PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=9.0  # DeepSpeed's JIT cannot parse "9.0a"
if [ ! -d /tmp/site ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl > /dev/null
fi
install_reference() {
  [ -d /tmp/ref ] && return
  # .whlref/shared.txt names the wheels both sets use, carried once in .whl
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --target /tmp/ref .whlref/*.whl $(sed 's|^|.whl/|' .whlref/shared.txt 2>/dev/null) > /dev/null
}
