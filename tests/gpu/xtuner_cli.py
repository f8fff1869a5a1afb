"""``python3 tests/gpu/xtuner_cli.py ARGS`` runs ``xtuner ARGS`` -- as on a card of
``MEM_LIMIT_GB`` GiB when that is set (``torch.cuda.set_per_process_memory_fraction``), which is
how the GPU scripts measure an 8 GB GPU on an H200. Needs xtuner on ``PYTHONPATH``."""
import os
import runpy
import sys

limit = os.environ.get("MEM_LIMIT_GB")
if limit:
    import torch

    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(float(limit) * 2**30 / total)
sys.argv = ["xtuner", *sys.argv[1:]]
runpy.run_module("xtuner", run_name="__main__")
