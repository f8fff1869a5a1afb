"""The first 50 logged losses of two ``xtuner train`` logs, side by side: what the GPU scripts
print to show a speed or memory lever leaves training unchanged.

    python3 tests/gpu/compare_losses.py LABEL LOG_A LOG_B
"""
import re
import sys

LOSS = re.compile(r"Iter\(train\).*? loss: ([0-9.]+)")


def first_losses(path: str, steps: int = 50) -> list[float]:
    with open(path) as log:
        return [float(x) for x in LOSS.findall(log.read())][:steps]


label, log_a, log_b = sys.argv[1:4]
a, b = first_losses(log_a), first_losses(log_b)
diff = [abs(x - y) for x, y in zip(a, b)]
if not diff:
    sys.exit(f"{label}: no losses to compare in {log_a}, {log_b}")
print(f"{label}, {len(diff)} steps: {a[0]:.4f}->{a[-1]:.4f} vs {b[0]:.4f}->{b[-1]:.4f}; "
      f"max |diff| {max(diff):.4f}, mean |diff| {sum(diff) / len(diff):.4f}")
