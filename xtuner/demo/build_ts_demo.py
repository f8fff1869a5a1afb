"""Regenerate the offline time-series demo data in ``xtuner/demo/ts_signals``.

Usage::

    python -m xtuner.demo.build_ts_demo [--output-dir DIR]

Writes, under ``DIR/ts_signals`` (default: the installed ``xtuner/demo`` directory):

* ``signals/*.wav|*.npy|*.csv``: 1.5 to 2.5 seconds of a signal sampled at 100 Hz, one of
  :data:`KINDS` (sine waves of 2, 5 and 12 Hz, a 3 Hz square wave, white noise) with a
  random amplitude, phase and a little noise;
* ``ts_signals.jsonl``: one chat record per signal in the seed's format, e.g. ``{"messages":
  [{"role": "user", "content": [{"type": "time_series_url", "time_series_url": {"url":
  "signals/0.wav", "sampling_rate": 100}}, {"type": "text", "text": "What is this
  signal?<TS_CONTEXT>"}]}, {"role": "assistant", "content": "A 5 Hz sine wave."}]}``, and a
  few text-only records.

The answers need the signal: the question does not say which kind it is. With the tiny Llama
of ``tiny_llm/`` and a small random-init Wav2Vec2 encoder built from its config (see
``configs/demo/demo_tiny_ts_signals_e16.py``), ``xtuner train demo_tiny_ts_signals_e16``
learns them on a CPU in a few minutes. Deterministic for a given numpy version.
"""
from __future__ import annotations

import argparse
import json
import sys
import wave
from pathlib import Path

import numpy as np

RATE = 100  # samples per second
#: kind -> (answer, wave shape, frequency in Hz)
KINDS = {
    "sine2": ("A 2 Hz sine wave.", "sine", 2.0),
    "sine5": ("A 5 Hz sine wave.", "sine", 5.0),
    "sine12": ("A 12 Hz sine wave.", "sine", 12.0),
    "square3": ("A 3 Hz square wave.", "square", 3.0),
    "noise": ("White noise.", "noise", 0.0),
}
QUESTIONS = ("What is this signal?<TS_CONTEXT>", "<TS_CONTEXT>\nWhat frequency is this?",
             "Describe the signal: <TS_CONTEXT>")
CHATS = (("Hello!", "Hello! Send me a signal and I will tell you what it is."),
         ("What can you do?", "I can tell sine waves, square waves and noise apart."),
         ("Thank you.", "You are welcome."))
SIGNALS_PER_KIND = 24
SUFFIXES = (".wav", ".npy", ".wav", ".csv")


def make_signal(kind: str, rng: np.random.Generator) -> np.ndarray:
    """One signal of ``kind`` in [-1, 1], 150 to 250 samples at :data:`RATE` Hz."""
    _, shape, freq = KINDS[kind]
    length = int(rng.integers(150, 251))
    t = np.arange(length) / RATE
    phase = rng.uniform(0, 2 * np.pi)
    if shape == "sine":
        x = np.sin(2 * np.pi * freq * t + phase)
    elif shape == "square":
        x = np.sign(np.sin(2 * np.pi * freq * t + phase))
    else:
        x = rng.normal(size=length)
        x /= np.abs(x).max()
    x = x * rng.uniform(0.4, 0.9) + rng.normal(scale=0.03, size=length)
    return np.clip(x, -1, 1).astype(np.float32)


def write_signal(path: Path, signal: np.ndarray) -> None:
    """Save as 16-bit PCM WAV, ``.npy`` or one-column ``.csv`` (by suffix)."""
    if path.suffix == ".wav":
        with wave.open(str(path), "wb") as f:
            f.setnchannels(1)
            f.setsampwidth(2)
            f.setframerate(RATE)
            f.writeframes((signal * 32767).astype("<i2").tobytes())
    elif path.suffix == ".npy":
        np.save(path, signal)
    else:
        path.write_text("value\n" + "".join(f"{v:.5f}\n" for v in signal), encoding="utf-8")


def record(url: str, question: str, answer: str | None = None) -> dict:
    """A chat record about the signal at ``url`` (no assistant turn when ``answer`` is None)."""
    messages = [{"role": "user", "content": [
        {"type": "time_series_url", "time_series_url": {"url": url, "sampling_rate": RATE}},
        {"type": "text", "text": question}]}]
    if answer is not None:
        messages.append({"role": "assistant", "content": answer})
    return {"messages": messages}


def build_signals(out_dir: Path, seed: int = 0) -> Path:
    """Write the signals and ``ts_signals.jsonl``; return the JSONL path."""
    rng = np.random.default_rng(seed)
    signals = out_dir / "signals"
    signals.mkdir(parents=True, exist_ok=True)
    records = []
    index = 0
    for _ in range(SIGNALS_PER_KIND):
        for kind, (answer, _, _) in KINDS.items():
            name = f"signals/{index}{SUFFIXES[index % len(SUFFIXES)]}"
            write_signal(out_dir / name, make_signal(kind, rng))
            records.append(record(name, QUESTIONS[index % len(QUESTIONS)], answer))
            index += 1
    for question, answer in CHATS:
        records.append({"messages": [{"role": "user", "content": question},
                                     {"role": "assistant", "content": answer}]})
    path = out_dir / "ts_signals.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", default=str(Path(__file__).resolve().parent))
    args = parser.parse_args(argv)
    print(build_signals(Path(args.output_dir) / "ts_signals"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
