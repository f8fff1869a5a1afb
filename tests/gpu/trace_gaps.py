"""Where a step's GPU time goes, from a torch profiler Chrome trace (e.g. w2_train_profile.sh's).

    python3 tests/gpu/trace_gaps.py TRACE.json [--gap-ms 0.5] [--top 12]

Per profiled step (``ProfilerStep#N``): its wall time, the time the GPU ran kernels or copies
(intervals merged), the kernel count, and the host calls that blocked (synchronisations and
device-to-host copies). Then the GPU's longest idle gaps with the host operator running when
each began (what the GPU waited for), and the host operators taking the most time inside
those gaps. A step whose GPU is busy for most of its wall time is compute-bound; one whose
gaps add up to most of it is waiting on the host (Python, launches, synchronisations).
"""
import argparse
import bisect
import collections
import json

parser = argparse.ArgumentParser()
parser.add_argument("trace")
parser.add_argument("--gap-ms", type=float, default=0.5, help="idle gaps listed from this length")
parser.add_argument("--top", type=int, default=12)
args = parser.parse_args()

with open(args.trace) as f:
    events = [e for e in json.load(f)["traceEvents"] if e.get("ph") == "X" and "dur" in e]
steps = sorted((e for e in events if e["name"].startswith("ProfilerStep#")
                and e.get("cat") != "gpu_user_annotation"),  # the host's span of each step
               key=lambda e: e["ts"])
device = sorted((e for e in events if e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")),
                key=lambda e: e["ts"])
host_ops = sorted((e for e in events if e.get("cat") == "cpu_op"), key=lambda e: e["ts"])
runtime = [e for e in events if e.get("cat") == "cuda_runtime"]
BLOCKING = ("Synchronize", "cudaMemcpy ", "cudaMemcpy\0", "cudaStreamWaitEvent")


def busy_and_gaps(start: float, end: float):
    """Merged device-busy time within [start, end] and the idle gaps (start, length)."""
    busy, gaps, cursor = 0.0, [], start
    for e in device:
        s, t = max(e["ts"], start), min(e["ts"] + e["dur"], end)
        if t <= s:
            continue
        if s > cursor:
            gaps.append((cursor, s - cursor))
        busy += max(0.0, t - max(s, cursor))
        cursor = max(cursor, t)
    if end > cursor:
        gaps.append((cursor, end - cursor))
    return busy, gaps


host_starts = [e["ts"] for e in host_ops]


def innermost_host_op(ts: float) -> str:
    """The shortest host operator that was running at ``ts`` (the most specific one)."""
    i = bisect.bisect_right(host_starts, ts)
    best = None
    for e in host_ops[max(0, i - 4000):i]:
        if e["ts"] <= ts <= e["ts"] + e["dur"] and (best is None or e["dur"] < best["dur"]):
            best = e
    return best["name"] if best else "(no operator: Python between operators)"


all_gaps = []
for step in steps:
    start, end = step["ts"], step["ts"] + step["dur"]
    busy, gaps = busy_and_gaps(start, end)
    kernels = sum(1 for e in device if start <= e["ts"] < end and e.get("cat") == "kernel")
    blocking = [e for e in runtime if start <= e["ts"] < end
                and any(b in e["name"] + "\0" for b in BLOCKING)]
    blocked = sum(e["dur"] for e in blocking)
    idle = sum(g for _, g in gaps if g >= args.gap_ms * 1000)
    print(f"{step['name']:16s} wall {step['dur'] / 1000:8.1f} ms  GPU busy {busy / 1000:8.1f} ms "
          f"({busy / step['dur']:5.1%})  kernels {kernels:6d}  idle gaps >= {args.gap_ms} ms: "
          f"{idle / 1000:7.1f} ms  blocking host calls {len(blocking)} ({blocked / 1000:.1f} ms)")
    all_gaps += [(length, ts) for ts, length in gaps if length >= args.gap_ms * 1000]

print("\nlongest GPU idle gaps (host operator running when each began):")
for length, ts in sorted(all_gaps, reverse=True)[:args.top]:
    print(f"  {length / 1000:8.2f} ms  {innermost_host_op(ts)[:110]}")

by_op = collections.Counter()
for length, ts in all_gaps:
    by_op[innermost_host_op(ts)[:110]] += length
print("\nidle time by the host operator running when the gap began:")
for name, total in by_op.most_common(args.top):
    print(f"  {total / 1000:8.2f} ms  {name}")

long_runtime = collections.Counter()
for e in runtime:
    if any(step["ts"] <= e["ts"] < step["ts"] + step["dur"] for step in steps):
        long_runtime[e["name"]] += e["dur"]
print("\nCUDA runtime calls by total host time in the profiled steps:")
for name, total in long_runtime.most_common(8):
    print(f"  {total / 1000:8.2f} ms  {name}")
