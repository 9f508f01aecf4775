"""Decode audio files to mono float32 at a target sample rate.

soundfile (libsndfile) reads wav, flac, ogg, mp3, aiff and au quickly and seeks precisely; PyAV (the
ffmpeg libraries, shipped in its wheel) reads everything else (m4a/aac, opus, wma, ...). Channels are
averaged to mono and soxr resamples, as ``librosa.load`` does, so features computed from our
waveforms match librosa's.

Files are read in blocks (:func:`stream`), so a one-hour file never sits in memory whole, and a part
of a long file can be read (``offset``/``duration``) without decoding what comes before it where
the format allows seeking.

Work and memory are bounded whatever a file claims (a 1 MB flac can hold ten hours of silence; a
wav header can say its samples are one second apart): a file that declares more than
``max_duration`` (:data:`MAX_DURATION`, six hours, by default) is refused before it is decoded, one
that declares no length is refused as soon as decoding passes it, sample rates outside
:data:`MIN_SAMPLE_RATE` to :data:`MAX_SAMPLE_RATE` are refused, and a block never holds more than a
few million samples whatever the channel count.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import struct
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genrify import defaults
from genrify.errors import AudioError, AudioTooLongError, ParameterError

#: Extensions libsndfile decodes natively.
SOUNDFILE_EXTENSIONS = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".aifc", ".au", ".snd", ".w64", ".caf"}
)
#: Extensions left to ffmpeg (through PyAV).
AV_EXTENSIONS = frozenset(
    {".m4a", ".m4b", ".mp4", ".aac", ".alac", ".opus", ".wma", ".webm", ".mka", ".ape", ".wv", ".mp2", ".ac3", ".amr", ".3gp"}
)
#: Every extension genrify treats as audio when scanning a folder.
AUDIO_EXTENSIONS = SOUNDFILE_EXTENSIONS | AV_EXTENSIONS

#: The rate :func:`load` resamples to unless told otherwise.
DEFAULT_SAMPLE_RATE = defaults.SAMPLE_RATE
# Native-rate seconds decoded at a time: large enough that per-block overhead is negligible,
# small enough that a long 48 kHz stereo file costs a few MB, not a few GB.
_BLOCK_SECONDS = 20.0
# A file that decodes to less than its header promises by more than this is truncated or corrupt.
_SHORTFALL_TOLERANCE_S = 0.5
_AV_PREROLL_S = 0.5
#: Longest audio decoded from one file unless a caller says otherwise (``--max-duration``), seconds.
MAX_DURATION = defaults.MAX_DURATION
#: Lowest native sample rate accepted, in Hz. Below it a file is no music genrify's features can
#: describe (it holds nothing above 1 kHz), and resampling it multiplies its samples: a header
#: declaring 1 Hz turns each stored sample into 22050 decoded ones (a 2 MB wav into 88 GB).
MIN_SAMPLE_RATE = 2000
#: Highest native sample rate accepted, in Hz: the highest any recording format uses (DXD is
#: 352.8 kHz; some converters run at 768 kHz). Higher ones are damage or a trap whose decoding work
#: grows with the rate.
MAX_SAMPLE_RATE = 768_000
# Native samples (frames x channels) read at a time, at most: a header may declare hundreds of
# channels, and 20 s of 1024 channels at 48 kHz would be 4 GB in one read.
_BLOCK_SAMPLES = 1 << 22
# What libsndfile reports as the length of a stream that does not say it (a FLAC whose STREAMINFO
# holds 0 samples, as a live encoder writes): no length, not 2**63 frames.
_SF_UNKNOWN_FRAMES = 2**63 - 1
# Decoders may give a few codec frames more than a header declares (padding): no reason to refuse.
_LIMIT_SLACK_S = 1.0


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says about its audio stream."""

    path: str
    sample_rate: int
    channels: int
    frames: int
    backend: str

    @property
    def duration(self) -> float:
        """Length in seconds (as declared by the header; 0 where it declares none)."""
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def span(seconds: float) -> str:
    """A duration for a message: ``"45 s"``, ``"12 min"``, ``"6 h"``, ``"30.5 h"``, ``"11.6 days"``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f}".removesuffix(".0") + " h"
    return f"{seconds / 86400:.1f}".removesuffix(".0") + " days"


def parse_duration(text: str) -> float:
    """Seconds in ``text``: a positive number of seconds, or one ending in ``s``, ``min``/``m`` or ``h``
    (``"6h"``, ``"90m"``, ``"1.5 h"``, ``"3600"``).

    Raises
    ------
    ParameterError
        Not a positive, finite duration.
    """
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*(s|sec|m|min|h)?\s*", text, re.IGNORECASE)
    seconds = float(match.group(1)) * {"h": 3600, "m": 60, "min": 60}.get((match.group(2) or "s").lower(), 1) if match else 0.0
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ParameterError(f"not a duration: {text!r} (give seconds, or a number ending in s, m or h: 6h, 90m)")
    return seconds


def check_header(head: AudioInfo, max_duration: float | None = MAX_DURATION) -> None:
    """Refuse a file whose header declares a sample rate or a length genrify will not decode.

    Parameters
    ----------
    head
        The header (:func:`info`).
    max_duration
        Longest declared length accepted, in seconds; ``None``: no limit.

    Raises
    ------
    AudioError
        The sample rate is outside :data:`MIN_SAMPLE_RATE` to :data:`MAX_SAMPLE_RATE`, or the
        declared length is over ``max_duration``.
    """
    _check_rate(Path(head.path), head.sample_rate)
    _check_declared(Path(head.path), head.duration, max_duration)


def _check_rate(path: Path, rate: int) -> None:
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioError(path, f"sample rate {rate} Hz: not music audio "
                               f"(genrify decodes {MIN_SAMPLE_RATE} Hz to {MAX_SAMPLE_RATE} Hz)")


def _check_declared(path: Path, seconds: float, max_duration: float | None) -> None:
    if max_duration is not None and seconds > max_duration + _LIMIT_SLACK_S:
        raise AudioTooLongError(path, f"declares {span(seconds)} of audio, over the {span(max_duration)} limit (--max-duration)")


def check_max_duration(max_duration: float | None) -> None:
    """Raise :class:`ParameterError` unless ``max_duration`` is ``None`` or a positive, finite number of seconds."""
    if max_duration is not None and not (max_duration > 0 and math.isfinite(max_duration)):
        problem = f"must be a positive number of seconds (none: no limit), not {max_duration}"
        raise ParameterError(f"max_duration {problem}", field="max_duration", problem=problem)


def is_audio_file(path: str | Path) -> bool:
    """True where ``path``'s extension is one genrify decodes (case-insensitive)."""
    return Path(path).suffix.lower() in AUDIO_EXTENSIONS


def info(path: str | Path) -> AudioInfo:
    """Read a file's sample rate, channel count and length without decoding it.

    Raises
    ------
    AudioError
        The file is missing, empty, unreadable or not audio.
    """
    path = _check_file(path)
    if path.suffix.lower() in SOUNDFILE_EXTENSIONS:
        try:
            return _soundfile_info(path)
        except AudioError:
            raise
        except Exception:  # noqa: BLE001 - libsndfile refuses; ffmpeg may still know the format
            pass
    return _av_info(path)


def load(
    path: str | Path,
    sr: int = DEFAULT_SAMPLE_RATE,
    *,
    offset: float = 0.0,
    duration: float | None = None,
    max_duration: float | None = MAX_DURATION,
) -> np.ndarray:
    """Decode a file (or a part of it) to one mono float32 array at ``sr`` Hz.

    The whole waveform is held: 4 bytes per sample, 320 MB per hour at 22050 Hz. A long file is
    better read with :func:`stream`; ``max_duration`` bounds what a file can make this cost.

    Parameters
    ----------
    path
        The audio file.
    sr
        Target sample rate in Hz.
    offset
        Start reading this many seconds into the file.
    duration
        Read at most this many seconds; ``None`` reads to the end.
    max_duration
        Refuse a file longer than this many seconds (:func:`stream`); ``None``: no limit.

    Returns
    -------
    numpy.ndarray
        1-D float32 waveform.

    Raises
    ------
    AudioError
        The file cannot be decoded, holds no samples in the requested range, is truncated, or is
        longer than ``max_duration``.
    """
    blocks = list(stream(path, sr, offset=offset, duration=duration, max_duration=max_duration))
    # Copied into place block by block, each freed as it goes: the peak is the waveform and one
    # block, not twice the waveform as with a concatenation.
    out = np.empty(sum(b.size for b in blocks), dtype=np.float32)
    at = 0
    blocks.reverse()
    while blocks:
        block = blocks.pop()
        out[at : at + block.size] = block
        at += block.size
    return out


def stream(
    path: str | Path,
    sr: int = DEFAULT_SAMPLE_RATE,
    *,
    offset: float = 0.0,
    duration: float | None = None,
    block_seconds: float = _BLOCK_SECONDS,
    max_duration: float | None = MAX_DURATION,
) -> Iterator[np.ndarray]:
    """Decode a file block by block: yields mono float32 arrays at ``sr`` Hz.

    Concatenated, the blocks equal :func:`load`'s result; memory stays bounded by the block size
    whatever the file's length. Errors found late (a truncated file, one longer than
    ``max_duration`` whose header did not say so) are raised after the blocks already decoded, so a
    caller must treat the stream as failed as a whole.

    Parameters
    ----------
    path, sr, offset, duration
        As for :func:`load`.
    block_seconds
        Native seconds decoded at a time (fewer where the file has many channels).
    max_duration
        Refuse a file whose header declares more than this many seconds, before decoding it, and
        stop with an error where decoding passes this point of a file (one that declares no length,
        or less than it holds); ``None``: no limit.

    Raises
    ------
    AudioError
        As :func:`load`; also a sample rate outside :data:`MIN_SAMPLE_RATE` to
        :data:`MAX_SAMPLE_RATE`.
    ParameterError
        ``sr``, ``offset``, ``duration``, ``block_seconds`` or ``max_duration`` out of range.
    """
    if sr <= 0:
        raise ParameterError(f"sample rate must be positive, not {sr}")
    if offset < 0:
        raise ParameterError(f"offset must be >= 0 seconds, not {offset}")
    if duration is not None and duration <= 0:
        raise ParameterError(f"duration must be > 0 seconds, not {duration}")
    if block_seconds <= 0:
        raise ParameterError(f"block_seconds must be > 0, not {block_seconds}")
    check_max_duration(max_duration)
    path = _check_file(path)
    native: Iterator[tuple[np.ndarray, int]] | None = None
    if path.suffix.lower() in SOUNDFILE_EXTENSIONS:
        try:
            native = _soundfile_blocks(path, offset, duration, block_seconds, max_duration)
            first = next(native, None)
        except AudioError:
            raise
        except Exception:  # noqa: BLE001 - libsndfile refuses the file; ffmpeg may decode it
            native = None
        else:
            if first is not None:
                native = _chain_first(first, native)
    if native is None:
        native = _av_blocks(path, offset, duration, block_seconds, max_duration)
    yielded = 0
    for block in _resample_blocks(_bounded(path, native, offset, max_duration), sr):
        problem = sample_problem(block)
        if problem is not None:  # one rule for every consumer: extraction, any model, the web app
            raise AudioError(path, problem)
        yielded += block.size
        yield block
    if yielded == 0:
        where = f" after {offset:g} s" if offset else ""
        raise AudioError(path, f"no audio samples{where}")


#: Largest sample magnitude accepted. Float files may exceed full scale (1.0) a little; samples
#: orders of magnitude beyond it are damage, and overflow the features (to inf) for some models
#: while others would quietly classify them.
MAX_SAMPLE_MAGNITUDE = 1e4


def sample_problem(samples: np.ndarray) -> str | None:
    """Why a decoded block is not valid audio (non-finite or absurdly large samples), or ``None``."""
    if samples.size == 0:
        return None
    hi, lo = float(samples.max()), float(samples.min())  # max/min propagate NaN
    if not (np.isfinite(hi) and np.isfinite(lo)):
        return "non-finite samples (NaN or infinity): not valid audio"
    peak = max(hi, -lo)
    if peak > MAX_SAMPLE_MAGNITUDE:
        return f"samples far outside [-1, 1] (peak {peak:.3g}): not valid audio"
    return None


def _bounded(
    path: Path, blocks: Iterator[tuple[np.ndarray, int]], offset: float, max_duration: float | None
) -> Iterator[tuple[np.ndarray, int]]:
    """Pass native blocks on while the rate is sane and the read stays within ``max_duration``.

    The one guard every decoder goes through: a header's declared length is checked before decoding
    (see :func:`_soundfile_blocks`), but a stream that declares none (some mp3 and ogg files) or
    less than it holds is only found out here, one block past the limit.
    """
    decoded = 0
    for samples, rate in blocks:
        if decoded == 0:
            _check_rate(path, rate)
        decoded += samples.size
        if max_duration is not None and offset + decoded / rate > max_duration + _LIMIT_SLACK_S:
            raise AudioTooLongError(path, f"more than {span(max_duration)} of audio, over the limit (--max-duration)")
        yield samples, rate


def _chain_first(first: tuple[np.ndarray, int], rest: Iterator[tuple[np.ndarray, int]]) -> Iterator[tuple[np.ndarray, int]]:
    yield first
    yield from rest


def _check_file(path: str | Path) -> Path:
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise AudioError(path, "file not found") from None
    except OSError as exc:
        raise AudioError(path, f"cannot read: {exc.strerror or exc}") from None
    if not path.is_file():
        raise AudioError(path, "not a regular file")
    if st.st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")
    if not os.access(path, os.R_OK):
        raise AudioError(path, "cannot read: permission denied")
    return path


# --- decoder chatter ---------------------------------------------------------------------------

_log = logging.getLogger("genrify.audio.decode")
# What C decoders print on their own: libmpg123's "Note: Illegal Audio-MPEG-Header ...",
# "Note: Trying to resync...", "[src/libmpg123/parse.c:...] error: Giving up resync ...".
_CHATTER = re.compile(rb"^\s*(?:(?:Note|Warning|Error|Info)\s*:|\[[^\]]*(?:mpg123|sndfile)[^\]]*\])", re.IGNORECASE)


class _Fd2Capture:
    """Borrows fd 2 while C decoders run, so that what they print goes to the log, not the terminal.

    libsndfile's mp3 decoder (libmpg123) writes notes about damaged frames straight to the C
    ``stderr``, over progress bars and into users' scripts; the damage itself is judged by the
    decoding (a file too damaged fails with an AudioError). fd 2 is process-wide, so the capture is
    shared: the first decoding thread in points fd 2 at a scratch file, the last one out points it
    back and sorts what arrived. Lines that look like a decoder's go to the ``genrify.audio.decode`` log
    at debug level (``genrify extract -v`` shows them); anything else (another thread's output in
    that window) is written on to the real stderr, late but not lost. A few system calls per
    decoded block: nothing next to decoding 20 seconds of audio.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._saved = -1
        self._scratch: int = -1
        self._pid = -1

    @contextlib.contextmanager
    def __call__(self, path: Path) -> Iterator[None]:
        entered = self._enter()
        try:
            yield
        finally:
            if entered:
                self._exit(path)

    def _enter(self) -> bool:
        with self._lock:
            if self._pid != os.getpid():  # a forked child: the parent's state is not ours
                self._depth, self._saved, self._scratch, self._pid = 0, -1, -1, os.getpid()
            if self._depth == 0:
                try:
                    if self._scratch < 0:
                        import tempfile

                        fd, name = tempfile.mkstemp(prefix="genrify-decoder-")
                        os.unlink(name)  # nameless: gone with the process, however it ends
                        self._scratch = fd
                    with contextlib.suppress(Exception):
                        sys.stderr.flush()  # Python's pending output belongs to the real stderr
                    self._saved = os.dup(2)
                    os.dup2(self._scratch, 2)
                except OSError:  # no fd 2 (a daemon), no temporary folder: decode uncaptured
                    return False
            self._depth += 1
            return True

    def _exit(self, path: Path) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth > 0:
                return
            os.dup2(self._saved, 2)
            os.close(self._saved)
            self._saved = -1
            size = os.fstat(self._scratch).st_size
            if not size:
                return
            text = os.pread(self._scratch, size, 0)
            os.ftruncate(self._scratch, 0)
            os.lseek(self._scratch, 0, os.SEEK_SET)
        passed = []
        for line in text.splitlines(keepends=True):  # logged outside the lock: handlers take their own
            if _CHATTER.match(line):
                _log.debug("%s: %s", path, line.decode("utf-8", "backslashreplace").rstrip())
            else:
                passed.append(line)
        if passed:
            with contextlib.suppress(OSError):
                os.write(2, b"".join(passed))


#: ``with decoder_output(path):`` around a decode: the decoders' chatter on fd 2 goes to the log
#: (DEBUG, naming ``path``), anything else written to stderr meanwhile still reaches it.
decoder_output = _Fd2Capture()


# --- soundfile -------------------------------------------------------------------------------


def _soundfile_info(path: Path) -> AudioInfo:
    import soundfile as sf

    with decoder_output(path):
        f = sf.SoundFile(os.fsencode(path))  # bytes: soundfile cannot encode a name that is not UTF-8
    with f:
        return AudioInfo(str(path), int(f.samplerate), int(f.channels), _sf_frames(f), "soundfile")


def _sf_frames(f) -> int:
    """A SoundFile's declared length in frames, 0 where it declares none."""
    frames = int(f.frames)
    return 0 if frames >= _SF_UNKNOWN_FRAMES or frames < 0 else frames


class _NoLength(Exception):  # noqa: N818 - a signal to stream(), never seen outside this module
    """libsndfile opened a stream that declares no length: ffmpeg decodes it instead."""


def _soundfile_blocks(
    path: Path, offset: float, duration: float | None, block_seconds: float, max_duration: float | None = None
) -> Iterator[tuple[np.ndarray, int]]:
    import soundfile as sf

    try:
        with decoder_output(path):
            f = sf.SoundFile(os.fsencode(path))  # bytes: soundfile cannot encode a name that is not UTF-8
    except PermissionError as exc:
        raise AudioError(path, f"cannot read: {exc.strerror}") from None
    with f:
        rate = int(f.samplerate)
        declared = _sf_frames(f)
        if int(f.frames) >= _SF_UNKNOWN_FRAMES:
            # libsndfile fails the read that reaches the end of such a stream, losing its last
            # block ("Internal psf_fseek() failed"); ffmpeg reads it to its end.
            raise _NoLength
        # Before a sample is decoded: a tiny file may declare days of audio, or a rate of 1 Hz.
        _check_rate(path, rate)
        _check_declared(path, declared / rate, max_duration)
        if f.format in ("WAV", "WAVEX", "RF64"):
            # libsndfile quietly shortens a WAV whose data chunk was cut off; we want to know.
            _check_wav_complete(path)
        start = int(round(offset * rate))
        if declared > 0 and start >= declared:
            return
        if start:
            with decoder_output(path):
                f.seek(start)
        wanted = declared - start if declared > 0 else None
        if duration is not None:
            limit = int(round(duration * rate))
            wanted = limit if wanted is None else min(wanted, limit)
        block = max(1, min(int(block_seconds * rate), _BLOCK_SAMPLES // max(1, int(f.channels))))
        read = 0
        while wanted is None or read < wanted:
            n = block if wanted is None else min(block, wanted - read)
            try:
                with decoder_output(path):
                    data = f.read(n, dtype="float32", always_2d=True)
            except sf.LibsndfileError as exc:
                raise AudioError(path, f"corrupt audio data: {_sndfile_reason(exc)}") from None
            if data.shape[0] == 0:
                break
            read += data.shape[0]
            yield _mix_to_mono(data), rate
        if wanted is not None and wanted - read > _SHORTFALL_TOLERANCE_S * rate:
            raise AudioError(
                path,
                f"truncated or corrupt: decoded {read / rate:.1f} s of the {wanted / rate:.1f} s its header declares",
            )


def _mix_to_mono(frames: np.ndarray) -> np.ndarray:
    """Average the channels of ``(samples, channels)`` float32 frames."""
    if frames.shape[1] == 1:
        return frames[:, 0]
    # Column by column: numpy's mean over the short, contiguous axis is ~30x slower than this.
    mono = frames[:, 0].copy()
    for c in range(1, frames.shape[1]):
        mono += frames[:, c]
    mono *= np.float32(1.0 / frames.shape[1])
    return mono


def _check_wav_complete(path: Path) -> None:
    """Raise AudioError where a RIFF/WAVE file's data chunk is cut short."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
            return
        if head[:4] == b"RF64":  # 64-bit sizes live in a ds64 chunk; libsndfile handles those
            return
        pos = 12
        while pos + 8 <= size:
            fh.seek(pos)
            chunk_id, chunk_size = struct.unpack("<4sI", fh.read(8))
            if chunk_id == b"data":
                available = size - pos - 8
                # 0 and 0xFFFFFFFF mark streamed WAVs whose size was never filled in.
                if chunk_size not in (0, 0xFFFFFFFF) and chunk_size > available:
                    raise AudioError(
                        path,
                        f"truncated: the data chunk declares {chunk_size} bytes but only {available} are present",
                    )
                return
            pos += 8 + chunk_size + (chunk_size & 1)


# --- PyAV (ffmpeg) ---------------------------------------------------------------------------


def _open_av(path: Path):
    import av

    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.error.PermissionError:
        raise AudioError(path, "cannot read: permission denied") from None
    except (av.error.InvalidDataError, av.error.EOFError):
        raise AudioError(path, "not a recognised audio format, or damaged (cannot decode)") from None
    except av.FFmpegError as exc:
        raise AudioError(path, f"cannot decode: {_av_reason(exc)}") from None
    if not container.streams.audio:
        container.close()
        raise AudioError(path, "no audio stream in this file")
    return container


def _sndfile_reason(exc: Exception) -> str:
    """libsndfile's reason without its ``"Error : "`` prefix and closing full stop."""
    text = str(getattr(exc, "error_string", None) or exc).strip()
    text = text.removeprefix("Error :").strip().rstrip(".")
    return text or "the decoder failed"


def _av_reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc)


def _av_info(path: Path) -> AudioInfo:
    container = _open_av(path)
    with container:
        audio = container.streams.audio[0]
        rate = int(audio.codec_context.sample_rate or audio.rate or 0)
        seconds = _av_seconds(container, audio)
        channels = int(audio.codec_context.channels or 0)
        return AudioInfo(str(path), rate, channels, int(round(seconds * rate)), "av")


def _av_seconds(container, audio) -> float:
    """The length a file's header declares (the stream's, else the container's), 0 where none."""
    if audio.duration is not None and audio.time_base is not None:
        return float(audio.duration * audio.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return 0.0


def _av_blocks(
    path: Path, offset: float, duration: float | None, block_seconds: float, max_duration: float | None = None
) -> Iterator[tuple[np.ndarray, int]]:
    import av

    container = _open_av(path)
    with container:
        audio = container.streams.audio[0]
        # What info() says, so that song_segments and the stream agree; a file that holds more than
        # it declares is stopped by _bounded.
        _check_declared(path, _av_seconds(container, audio), max_duration)
        # Normalise whatever sample format the codec gives to planar float; rate and layout stay.
        converter = av.AudioResampler(format="fltp")
        rate = 0
        block = 0
        skip = 0  # native samples still to drop before ``offset``
        remaining: int | None = None
        seeked = False
        if offset > 0:
            try:
                # Seek a little early: a transform codec's first frame after a seek lacks the
                # overlap of the one before, so its samples are wrong; those are dropped below.
                container.seek(int(max(0.0, offset - _AV_PREROLL_S) * 1_000_000), any_frame=False)
                seeked = True
            except av.FFmpegError:
                pass  # unseekable stream: decode from the start and drop samples below
        pending: list[np.ndarray] = []
        pending_n = 0
        try:
            for frame in container.decode(audio):
                if rate == 0:
                    rate = int(frame.sample_rate)
                    block = max(1, int(block_seconds * rate))
                    if duration is not None:
                        remaining = int(round(duration * rate))
                    # A seek lands on a packet at or before the offset; drop what precedes it.
                    start = 0.0
                    if seeked and frame.pts is not None and frame.time_base is not None:
                        start = float(frame.pts * frame.time_base)
                    skip = max(0, int(round((offset - start) * rate)))
                for converted in converter.resample(frame):
                    samples = converted.to_ndarray().mean(axis=0, dtype=np.float32)
                    if skip:
                        cut = min(skip, samples.size)
                        samples, skip = samples[cut:], skip - cut
                    if remaining is not None:
                        samples = samples[:remaining]
                        remaining -= samples.size
                    if samples.size:
                        pending.append(samples)
                        pending_n += samples.size
                    if pending_n >= block:
                        yield np.concatenate(pending), rate
                        pending, pending_n = [], 0
                if remaining is not None and remaining <= 0:
                    break
        except av.FFmpegError as exc:
            raise AudioError(path, f"corrupt audio data: {_av_reason(exc)}") from None
        if pending_n:
            yield np.concatenate(pending), rate


# --- resampling ------------------------------------------------------------------------------


def _resample_blocks(blocks: Iterator[tuple[np.ndarray, int]], sr: int) -> Iterator[np.ndarray]:
    """Resample a stream of (mono block, native rate) to ``sr`` with soxr's streaming resampler.

    The streaming resampler carries its filter state across blocks, so the result equals
    ``soxr.resample`` over the whole signal (which is what librosa.load uses) up to rounding.
    """
    import soxr

    resampler = None
    for samples, rate in blocks:
        samples = np.ascontiguousarray(samples, dtype=np.float32)
        if rate == sr:
            if samples.size:
                yield samples
            continue
        if resampler is None:
            resampler = soxr.ResampleStream(rate, sr, 1, dtype="float32", quality="HQ")
        out = resampler.resample_chunk(samples)
        if out.size:
            yield out
    if resampler is not None:
        tail = resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        if tail.size:
            yield tail
