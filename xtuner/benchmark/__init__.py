"""``xtuner benchmark``: speed and memory of a config's training step on synthetic packed data.

* :mod:`.synthetic`: packed rows of random tokens with realistic sample lengths.
* :mod:`.setup`: turns a training config into a short benchmark run (random weights on request).
* :mod:`.meter`: the hook that times each step (data, forward+backward, optimizer) and memory.
* :mod:`.baseline`: the same steps as a plain Hugging Face training loop, for comparison.
* :mod:`.report`: throughput, model FLOPs and MFU, printed as a table or written as JSON.
"""
