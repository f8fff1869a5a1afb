"""Read signal files: ``.wav`` (stdlib ``wave``), ``.csv``, ``.npy``; ``.mp3``/``.flac`` when
``soundfile`` is installed.

Every loader returns a float32 array of shape ``(samples, channels)``; :func:`signal_length`
reads only what it needs to know the number of samples (a WAV header, an ``.npy`` header),
so a dataset can count the tokens of every sample before any signal is loaded. Problems are
one-line :class:`~xtuner.utils.errors.DataError` messages naming the file.
"""
from __future__ import annotations

import csv
import wave
from pathlib import Path

import numpy as np

from xtuner.utils.errors import DataError

__all__ = ["SIGNAL_SUFFIXES", "load_signal", "signal_info"]

#: Suffixes :func:`load_signal` reads (``.mp3``/``.flac`` only with ``soundfile``).
SIGNAL_SUFFIXES = (".wav", ".csv", ".npy", ".mp3", ".flac")
_SOUNDFILE_SUFFIXES = (".mp3", ".flac")


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.suffix.lower() not in SIGNAL_SUFFIXES:
        raise DataError(f"{path}: cannot read a {path.suffix or 'suffix-less'} file as a "
                        f"signal; expected one of {', '.join(SIGNAL_SUFFIXES)}")


def _soundfile(path: Path):
    try:
        import soundfile
    except ImportError:
        raise DataError(f"{path}: decoding {path.suffix} needs the soundfile package "
                        "(pip install soundfile), or convert the file to .wav") from None
    return soundfile


def _wav(path: Path, header_only: bool):
    try:
        with wave.open(str(path), "rb") as f:
            channels, width, rate, frames = (f.getnchannels(), f.getsampwidth(),
                                             f.getframerate(), f.getnframes())
            raw = None if header_only else f.readframes(frames)
    except (wave.Error, EOFError) as exc:
        # The stdlib reads integer PCM only; a float WAV says "unknown format: 3".
        raise DataError(f"{path}: not a readable PCM WAV file ({exc}); write 8/16/32-bit "
                        "integer PCM, or use .npy for float samples") from None
    if header_only:
        return None, frames, channels, rate
    if width == 1:  # 8-bit WAV is unsigned
        data = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width in (2, 4):
        kind = np.int16 if width == 2 else np.int32
        data = np.frombuffer(raw, kind).astype(np.float32) / float(np.iinfo(kind).max)
    else:
        raise DataError(f"{path}: {8 * width}-bit WAV samples are not supported; write 8, 16 "
                        "or 32-bit PCM")
    return data.reshape(-1, channels), frames, channels, rate


def _csv(path: Path) -> np.ndarray:
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for number, row in enumerate(csv.reader(f), 1):
            if not row or all(not cell.strip() for cell in row):
                continue
            try:
                rows.append([float(cell) for cell in row])
            except ValueError:
                if number == 1 and not rows:
                    continue  # a header line
                raise DataError(f"{path}:{number}: not a row of numbers: {','.join(row)[:60]!r}"
                                ) from None
            if len(rows[-1]) != len(rows[0]):
                raise DataError(f"{path}:{number}: {len(rows[-1])} columns, the first row has "
                                f"{len(rows[0])}")
    if not rows:
        raise DataError(f"{path}: no numeric rows")
    return np.asarray(rows, dtype=np.float32)


def _npy(path: Path, header_only: bool) -> np.ndarray:
    try:
        data = np.load(path, mmap_mode="r" if header_only else None, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: not a readable .npy array ({exc})") from None
    if data.ndim not in (1, 2) or not np.issubdtype(data.dtype, np.number):
        raise DataError(f"{path}: expected a numeric array of shape (samples,) or (samples, "
                        f"channels), got {data.dtype} {tuple(data.shape)}")
    return data


def load_signal(path: str | Path) -> tuple[np.ndarray, int | None]:
    """Load a signal file.

    Args:
        path: a ``.wav``, ``.csv`` (one row per sample, one column per channel, an optional
            header line), ``.npy`` (``(samples,)`` or ``(samples, channels)``) or, with
            ``soundfile`` installed, ``.mp3``/``.flac`` file.

    Returns:
        ``(signal, sampling_rate)``: float32 ``(samples, channels)``; the rate stored in the
        file (WAV, MP3, FLAC) or ``None``.

    Raises:
        DataError: a missing or unreadable file, or an unsupported format.
    """
    path = Path(path)
    _check_file(path)
    suffix = path.suffix.lower()
    rate = None
    if suffix == ".wav":
        data, _, _, rate = _wav(path, header_only=False)
    elif suffix == ".csv":
        data = _csv(path)
    elif suffix == ".npy":
        data = np.asarray(_npy(path, header_only=False), dtype=np.float32)
    else:
        data, rate = _soundfile(path).read(str(path), dtype="float32", always_2d=True)
    data = data.reshape(len(data), -1).astype(np.float32, copy=False)
    if not np.isfinite(data).all():
        raise DataError(f"{path}: the signal holds NaN or infinite values")
    return data, rate


def signal_info(path: str | Path) -> tuple[int, int | None]:
    """``(samples, sampling_rate)`` of a signal file, reading as little of it as possible."""
    path = Path(path)
    _check_file(path)
    suffix = path.suffix.lower()
    if suffix == ".wav":
        _, frames, _, rate = _wav(path, header_only=True)
        return frames, rate
    if suffix == ".npy":
        return len(_npy(path, header_only=True)), None
    if suffix == ".csv":
        return len(_csv(path)), None
    info = _soundfile(path).info(str(path))
    return int(info.frames), int(info.samplerate)
