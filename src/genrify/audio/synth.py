"""Procedurally synthesised multi-instrument songs, for demos, tests and benchmarks.

Every song has drums, bass, a harmony part (sometimes two) and a lead line, written by a small
per-genre "composer" (tempo range, swing, drum patterns, bass and comping rhythms, chord
progressions and qualities, scales, instruments) and rendered with table-lookup oscillators,
synthesised drum hits, distortion, filters and a noise-convolution reverb.

The genres are meant to be learnable from log-mel spectrograms (rhythm and timbre patterns differ)
while simple statistics overlap: tempo ranges overlap, and every song draws its own peak level,
master compression, filtering and background noise, so that loudness, tempo or brightness alone
does not tell the genres apart.

A song depends only on ``(genre, seconds, seed, index, sample_rate, channels)``: its random numbers
come from ``numpy.random.SeedSequence([seed, genre_index, index])``, so it does not matter how many
other songs are made, in which order or in which process. The musical content (the "score" and the
mix settings) is drawn from a generator of its own, so that the same song at another sample rate
or channel count plays the same notes.
"""

from __future__ import annotations

import math
import numbers
import operator
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import scipy.fft
import soundfile as sf
from scipy import signal

from genrify.core.fsutil import atomic_path
from genrify.core.runner import LocalRunner, Processor, Runner
from genrify.defaults import SAMPLE_RATE
from genrify.errors import GenrifyIOError, ParameterError

__all__ = [
    "FORMATS",
    "GENRES",
    "MAX_SECONDS",
    "MIXED",
    "SynthSpec",
    "resolve_genres",
    "song_paths",
    "synthesize_song",
    "write_dataset",
    "write_song",
]

GENRES: tuple[str, ...] = (
    "blues",
    "classical",
    "country",
    "disco",
    "hiphop",
    "jazz",
    "metal",
    "pop",
    "reggae",
    "rock",
)
FORMATS: tuple[str, ...] = ("wav", "flac", "mp3", "ogg")
MIXED = "mixed"
MAX_SECONDS = 3600.0
MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 192000

_SF_FORMAT = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}
# The rates MPEG audio (layers 1-3, versions 1, 2 and 2.5) can carry; libsndfile refuses others.
_MP3_RATES = frozenset({8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000})


_T = TypeVar("_T")

# --------------------------------------------------------------------------------------------
# Argument checking


def _check_genre(genre: object) -> int:
    if not isinstance(genre, str) or genre not in GENRES:
        raise ParameterError(f"unknown genre {genre!r}; known genres: {', '.join(GENRES)}")
    return GENRES.index(genre)


def _check_int(name: str, value: object, lo: int, hi: int | None = None) -> int:
    # bool is an int subclass, but True as a sample rate or seed is surely a mistake.
    if isinstance(value, bool):
        raise ParameterError(f"{name} must be an integer, got {value!r}")
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise ParameterError(f"{name} must be an integer, got {value!r}") from None
    if number < lo or (hi is not None and number > hi):
        bounds = f">= {lo}" if hi is None else f"between {lo} and {hi}"
        raise ParameterError(f"{name} must be {bounds}, got {value!r}")
    return number


def _check_seconds(seconds: object) -> float:
    if isinstance(seconds, bool) or not isinstance(seconds, numbers.Real):
        raise ParameterError(f"seconds must be a number, got {seconds!r}")
    value = float(seconds)
    if not 0.0 < value <= MAX_SECONDS:  # also rejects NaN
        raise ParameterError(f"seconds must be > 0 and <= {MAX_SECONDS:g}, got {seconds!r}")
    return value


def _check_channels(channels: object) -> int:
    if isinstance(channels, bool) or channels not in (1, 2):
        raise ParameterError(f"channels must be 1 or 2, got {channels!r}")
    return int(channels)  # type: ignore[call-overload]


def _check_fmt(fmt: object) -> str:
    if fmt not in (*FORMATS, MIXED):
        raise ParameterError(f"unknown format {fmt!r}; expected one of {', '.join((*FORMATS, MIXED))}")
    return str(fmt)


# --------------------------------------------------------------------------------------------
# Music theory

_QUALITIES: dict[str, tuple[int, ...]] = {
    "maj": (0, 4, 7),
    "min": (0, 3, 7),
    "dim": (0, 3, 6),
    "7": (0, 4, 7, 10),
    "maj7": (0, 4, 7, 11),
    "m7": (0, 3, 7, 10),
    "m7b5": (0, 3, 6, 10),
    "9": (0, 4, 7, 10, 14),
    "m9": (0, 3, 7, 10, 14),
    "6": (0, 4, 7, 9),
    "sus4": (0, 5, 7),
    "5": (0, 7, 12),
}
_ROMAN = {"i": 0, "ii": 2, "iii": 4, "iv": 5, "v": 7, "vi": 9, "vii": 11}
# A lower-case numeral makes the default and the 7th/9th minor; "hd7" is half-diminished.
_MINOR_SUFFIX = {"": "min", "7": "m7", "9": "m9", "o": "dim", "hd7": "m7b5"}
_MAJOR_SUFFIX = {"": "maj"}
_CHORD_RE = re.compile(r"([b#]*)(vii|vi|v|iv|iii|ii|i|VII|VI|V|IV|III|II|I)(.*)")

_SCALES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "harmonic_minor": (0, 2, 3, 5, 7, 8, 11),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "major_pent": (0, 2, 4, 7, 9),
    "minor_pent": (0, 3, 5, 7, 10),
    "blues": (0, 3, 5, 6, 7, 10),
    "bebop": (0, 2, 4, 5, 7, 9, 10, 11),
}

Chord = tuple[int, tuple[int, ...]]  # (root in semitones above the tonic, intervals above the root)


def _parse_chord(symbol: str) -> Chord:
    match = _CHORD_RE.fullmatch(symbol)
    if match is None:
        raise ValueError(f"bad chord symbol {symbol!r}")
    accidentals, numeral, suffix = match.groups()
    shift = accidentals.count("#") - accidentals.count("b")
    table = _MINOR_SUFFIX if numeral.islower() else _MAJOR_SUFFIX
    return (_ROMAN[numeral.lower()] + shift) % 12, _QUALITIES[table.get(suffix, suffix)]


def _progressions(*texts: str) -> tuple[tuple[Chord, ...], ...]:
    return tuple(tuple(_parse_chord(s) for s in text.split()) for text in texts)


def _midi_hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


# --------------------------------------------------------------------------------------------
# Instruments (voices)

_TABLE_SIZE = 4096
_TABLE_MASK = _TABLE_SIZE - 1


@dataclass(frozen=True, eq=False)
class _Voice:
    """A pitched instrument: a harmonic spectrum with an ADSR-like envelope and a few extras."""

    harmonics: tuple[float, ...]
    bright: tuple[float, ...] = ()  # spectrum of the attack transient (pluck, hammer, tine)
    bright_decay: float = 0.05
    attack: float = 0.005
    decay: float = 0.0  # 0: no decay towards the sustain level
    sustain: float = 1.0
    release: float = 0.05
    keytrack: bool = False  # high notes decay faster, as on a piano or a string
    detune: float = 0.0  # cents of a second, detuned oscillator (chorus, double tracking)
    vibrato_rate: float = 0.0
    vibrato_depth: float = 0.0  # semitones
    vibrato_delay: float = 0.2
    bend_time: float = 0.06  # how fast a bend reaches the target pitch
    bends: bool = False  # the lead may bend into notes
    bell_ratio: float = 0.0  # an inharmonic partial (bells, vibraphone bars)
    bell_amp: float = 0.0
    bell_decay: float = 0.3


def _pw(power: float, count: int, scale: float = 1.0, start: int = 1) -> tuple[float, ...]:
    return tuple(0.0 if h < start else scale / h**power for h in range(1, count + 1))


def _make_voice(name: str, rng: np.random.Generator) -> _Voice:
    """The instrument called ``name``, with its tone colour varied a little per song."""
    u = rng.uniform
    if name == "piano":
        return _Voice(_pw(u(2.2, 2.8), 12), _pw(u(1.1, 1.5), 30, 0.6), u(0.04, 0.1),
                      attack=0.002, decay=u(0.5, 1.1), sustain=0.0, release=0.12, keytrack=True)
    if name == "epiano":
        tine = tuple(u(0.15, 0.35) if h == 7 else 0.0 for h in range(1, 8))
        return _Voice((1.0, u(0.05, 0.2), 0.04), tine, 0.03, attack=0.003, decay=u(0.9, 1.6),
                      sustain=0.15, release=0.15, keytrack=True)
    if name == "organ":
        bars = (1.0, u(0.5, 1.0), u(0.3, 0.8), u(0.2, 0.6), 0.0, u(0.0, 0.4), 0.0, u(0.0, 0.4))
        click = tuple(0.4 if h == 3 else 0.0 for h in range(1, 4)) if rng.random() < 0.5 else ()
        return _Voice(bars, click, 0.05, attack=0.004, release=0.03)
    if name == "strings":
        return _Voice(_pw(u(1.2, 1.6), 28), attack=u(0.12, 0.35), release=u(0.3, 0.6), detune=u(6, 14))
    if name == "synthpad":
        return _Voice(_pw(u(1.4, 2.0), 20), attack=u(0.05, 0.2), release=0.3, detune=u(10, 20))
    if name == "guitar_clean":
        return _Voice(_pw(u(1.8, 2.4), 10), _pw(u(0.9, 1.2), 30, 0.7), u(0.05, 0.12),
                      attack=0.002, decay=u(0.4, 0.9), sustain=0.05, release=0.05, keytrack=True)
    if name == "guitar_twang":
        # Strong 3rd-8th harmonics that die quickly: the bright "snap" of a telecaster.
        snap = tuple(0.0 if h < 3 else 0.9 / (h - 2) ** 0.6 for h in range(1, 25))
        return _Voice(_pw(u(1.5, 1.9), 14), snap, u(0.08, 0.18), attack=0.002, decay=u(0.3, 0.6),
                      sustain=0.1, release=0.05, keytrack=True, bends=True, bend_time=0.05)
    if name == "guitar_mute":
        return _Voice(_pw(2.2, 8), _pw(1.3, 16, 0.4), 0.02, attack=0.002, decay=u(0.05, 0.1),
                      sustain=0.0, release=0.02)
    if name == "guitar_dist":
        return _Voice(_pw(u(0.9, 1.2), 24), attack=0.003, decay=u(1.0, 2.5), sustain=u(0.4, 0.7),
                      release=0.06, detune=u(3, 8))
    if name == "guitar_chug":
        return _Voice(_pw(1.3, 16), attack=0.002, decay=u(0.06, 0.12), sustain=0.0, release=0.02)
    if name == "bass_finger":
        return _Voice((1.0, u(0.35, 0.55), 0.25, 0.12, 0.06, 0.03), _pw(1.5, 14, 0.25), 0.04,
                      attack=0.004, decay=u(0.5, 1.0), sustain=0.35, release=0.05)
    if name == "bass_upright":
        return _Voice((1.0, u(0.2, 0.4), u(0.05, 0.15), 0.04), _pw(2.0, 10, 0.3), 0.02,
                      attack=0.006, decay=u(0.25, 0.45), sustain=0.1, release=0.06)
    if name == "bass_sub":
        return _Voice((1.0, u(0.0, 0.08), u(0.0, 0.04)), attack=0.006, decay=u(0.4, 1.0),
                      sustain=u(0.5, 0.9), release=0.08)
    if name == "bass_synth":
        return _Voice(_pw(u(1.5, 2.1), 14), attack=0.003, decay=u(0.15, 0.3), sustain=u(0.3, 0.6),
                      release=0.03)
    if name == "bass_pick":
        return _Voice(_pw(u(1.2, 1.6), 16), _pw(1.0, 24, 0.4), 0.03, attack=0.002, decay=u(0.3, 0.6),
                      sustain=0.4, release=0.04)
    if name == "cello":
        return _Voice(_pw(u(1.1, 1.4), 20), attack=u(0.08, 0.2), release=0.25,
                      vibrato_rate=u(4.5, 6.0), vibrato_depth=u(0.08, 0.18))
    if name == "flute":
        return _Voice((1.0, u(0.1, 0.3), u(0.03, 0.1), 0.02), attack=u(0.04, 0.08), release=0.08,
                      vibrato_rate=u(4.5, 5.5), vibrato_depth=0.12, vibrato_delay=0.15)
    if name == "violin":
        spectrum = tuple((1.5 if 3 <= h <= 6 else 1.0) / h ** u(0.8, 1.1) for h in range(1, 25))
        return _Voice(spectrum, attack=0.06, release=0.1, vibrato_rate=u(5.5, 6.5),
                      vibrato_depth=u(0.15, 0.3), vibrato_delay=0.15, bends=True, bend_time=0.08)
    if name == "clarinet":
        spectrum = tuple((1.0 / h) if h % 2 else 0.05 / h for h in range(1, 16))
        return _Voice(spectrum, attack=0.03, release=0.06, vibrato_rate=5.0, vibrato_depth=0.05)
    if name == "sax":
        spectrum = tuple((1.3 if 2 <= h <= 5 else 1.0) / h ** u(0.8, 1.0) for h in range(1, 17))
        return _Voice(spectrum, attack=0.03, decay=0.5, sustain=0.8, release=0.06, vibrato_rate=5.0,
                      vibrato_depth=u(0.1, 0.2), vibrato_delay=0.25, bends=True)
    if name == "trumpet":
        return _Voice(_pw(u(0.6, 0.8), 16), attack=0.04, decay=0.4, sustain=0.8, release=0.06,
                      vibrato_rate=5.5, vibrato_depth=0.06, vibrato_delay=0.3)
    if name == "vibes":
        return _Voice((1.0, 0.0, 0.0, 0.08), attack=0.002, decay=u(1.0, 2.0), sustain=0.0, release=0.2,
                      bell_ratio=3.93, bell_amp=0.3, bell_decay=0.2)
    if name == "harmonica":
        spectrum = (1.0, 0.3, 0.7, 0.2, 0.5, 0.15, 0.35, 0.1, 0.2, 0.05, 0.1)
        return _Voice(spectrum, attack=0.03, release=0.05, vibrato_rate=u(5.0, 7.0),
                      vibrato_depth=u(0.1, 0.25), vibrato_delay=0.1, bends=True, bend_time=0.1)
    if name == "lead_dist":
        return _Voice(_pw(u(0.9, 1.1), 24), attack=0.004, decay=1.5, sustain=0.7, release=0.08,
                      vibrato_rate=u(5.0, 6.5), vibrato_depth=u(0.2, 0.35), vibrato_delay=0.25,
                      bends=True, bend_time=0.07)
    if name == "synth_lead":
        spectrum = tuple((1.0 if h % 2 else 0.1) / h for h in range(1, 16))
        return _Voice(spectrum, attack=0.01, sustain=0.9, decay=0.3, release=0.08, vibrato_rate=5.5,
                      vibrato_depth=0.08, vibrato_delay=0.3, detune=u(0.0, 10.0))
    if name == "voice":
        return _Voice((1.0, u(0.3, 0.6), u(0.1, 0.3), 0.08, 0.04), attack=u(0.04, 0.1), release=0.12,
                      vibrato_rate=u(5.0, 6.0), vibrato_depth=u(0.15, 0.3), vibrato_delay=0.2)
    if name == "bell":
        return _Voice((1.0, 0.0, 0.0, 0.0, 0.05), attack=0.002, decay=u(0.8, 1.6), sustain=0.0,
                      release=0.2, bell_ratio=u(2.7, 2.8), bell_amp=0.5, bell_decay=0.25)
    if name == "melodica":
        return _Voice((1.0, 0.6, 0.5, 0.35, 0.25, 0.18, 0.12, 0.08), attack=0.02, release=0.05,
                      vibrato_rate=5.0, vibrato_depth=0.05)
    if name == "steel":
        return _Voice((1.0, u(0.2, 0.4), 0.12, 0.06), attack=u(0.05, 0.1), decay=2.0, sustain=0.6,
                      release=0.15, vibrato_rate=5.0, vibrato_depth=0.08, bends=True, bend_time=0.15)
    if name == "harp":
        return _Voice(_pw(2.6, 8), _pw(1.6, 14, 0.4), 0.05, attack=0.002, decay=u(0.8, 1.4),
                      sustain=0.0, release=0.2, keytrack=True)
    if name == "brass":
        return _Voice(_pw(u(0.7, 0.9), 14), attack=0.02, decay=0.3, sustain=0.6, release=0.05)
    raise AssertionError(f"no voice {name!r}")


# --------------------------------------------------------------------------------------------
# Genre styles

Pattern = dict[str, str]  # drum piece -> one char per 16th: "." rest, "o" ghost, "x" hit, "X" accent


@dataclass(frozen=True)
class _Style:
    """What makes a genre: tempo, feel, harmony, drums, parts, instruments, mix and effects."""

    tempo: tuple[float, float]
    patterns: tuple[Pattern, ...]
    major: tuple[tuple[Chord, ...], ...]
    minor: tuple[tuple[Chord, ...], ...]
    bass: tuple[tuple[str, str], ...]  # (rhythm, voice)
    comp: tuple[tuple[str, str], ...]
    lead: tuple[str, ...]  # voices
    lead_scales: tuple[tuple[str, ...], tuple[str, ...]]  # (for major keys, for minor keys)
    lead_rhythm: tuple[tuple[int, float], ...]  # (length in 16ths, weight)
    comp2: tuple[tuple[str, str] | None, ...] = (None,)
    waltz_patterns: tuple[Pattern, ...] = ()
    swing8: tuple[float, float] = (0.5, 0.5)
    swing16: tuple[float, float] = (0.5, 0.5)
    minor_p: float = 0.3
    waltz_p: float = 0.0
    chords_per_bar: tuple[int, ...] = (1,)
    power_p: float = 0.0
    drums_p: float = 1.0
    fill_p: float = 0.4
    crash_p: float = 0.8
    jitter: float = 0.006  # seconds of timing spread
    section_bars: int = 8
    lead_p: float = 0.7
    lead_rest: float = 0.25
    lead_bend_p: float = 0.0
    lead_leap: float = 0.2  # how often the melody jumps rather than steps
    lead_octave: int = 0
    levels: dict[str, float] = field(default_factory=dict)  # dB offsets from _BASE_LEVELS
    comp_drive: tuple[float, float] = (0.0, 0.0)
    lead_drive: tuple[float, float] = (0.0, 0.0)
    bass_drive: tuple[float, float] = (0.0, 0.0)
    lofi_p: float = 0.0
    reverb: tuple[float, float] = (0.4, 1.4)  # RT60 range, seconds
    wet: tuple[float, float] = (0.05, 0.3)


_BASE_LEVELS = {"kick": -8.0, "drums": -6.0, "cymbals": -12.0, "bass": -8.0, "comp": -12.0,
                "comp2": -16.0, "lead": -10.0}

_STYLES: dict[str, _Style] = {
    "blues": _Style(
        tempo=(65, 130), swing8=(0.62, 0.69), minor_p=0.25, section_bars=12, jitter=0.008,
        patterns=(
            {"K": "X.......X.......", "S": "....X.......X...", "H": "X.x.X.x.X.x.X.x."},
            {"K": "X.....x.X.......", "S": "....X.......X..o", "Y": "X.x.X.x.X.x.X.x."},
            {"K": "X...x...X...x...", "S": "o.o.X.o.o.o.X.o.", "H": "X.x.X.x.X.x.X.x."},
        ),
        major=_progressions("I7 I7 I7 I7 IV7 IV7 I7 I7 V7 IV7 I7 V7",
                            "I7 IV7 I7 I7 IV7 IV7 I7 I7 V7 IV7 I7 V7"),
        minor=_progressions("i7 i7 i7 i7 iv7 iv7 i7 i7 bVI7 V7 i7 V7"),
        bass=(("boogie", "bass_finger"), ("walking", "bass_upright"), ("boogie", "bass_upright")),
        comp=(("shuffle", "piano"), ("shuffle", "organ"), ("shuffle", "guitar_clean"), ("pad", "organ")),
        comp2=(None, None, ("pad", "organ")),
        lead=("lead_dist", "harmonica", "piano"),
        lead_scales=(("blues", "minor_pent"), ("blues", "minor_pent")),
        lead_rhythm=((2, 5), (4, 2), (6, 1), (8, 1), (1, 1)),
        lead_rest=0.3, lead_bend_p=0.35, lead_drive=(1.5, 4.0), fill_p=0.3,
    ),
    "classical": _Style(
        tempo=(60, 140), minor_p=0.4, waltz_p=0.3, drums_p=0.25, fill_p=0.0, crash_p=0.1,
        jitter=0.012,
        patterns=({"I": "X..............."}, {"I": "X.......x......."}),
        waltz_patterns=({"I": "X..........."},),
        major=_progressions("I IV V I", "I vi IV V", "I V vi iii IV I IV V", "I ii V I", "I IV ii V"),
        minor=_progressions("i iv V i", "i bVI bIII bVII", "i iv bVII bIII bVI iio V i", "i V i V"),
        bass=(("sustain", "cello"), ("pizz", "bass_upright"), ("sustain", "cello")),
        comp=(("pad", "strings"), ("arpeggio", "harp"), ("alberti", "piano"), ("arpeggio", "piano")),
        comp2=(None, ("pad", "strings")),
        lead=("flute", "violin", "clarinet", "piano"),
        lead_scales=(("major",), ("harmonic_minor", "minor")),
        lead_rhythm=((4, 4), (2, 3), (8, 2), (1, 1)),
        lead_rest=0.12, lead_p=0.85, lead_leap=0.12, lead_octave=12,
        levels={"drums": -4.0, "comp": 3.0, "comp2": 2.0},
        reverb=(1.2, 3.0), wet=(0.2, 0.5),
    ),
    "country": _Style(
        tempo=(85, 160), swing8=(0.5, 0.56), minor_p=0.1, waltz_p=0.2, jitter=0.007,
        patterns=(
            {"K": "X.......X.......", "S": "....X.......X...", "H": "x.x.x.x.x.x.x.x."},
            {"K": "X.......X.......", "B": "o.o.X.o.o.o.X.o.", "H": "....x.......x..."},
            {"K": "X.......X.......", "R": "....X.......X...", "H": "..x...x...x...x."},
        ),
        waltz_patterns=({"K": "X...........", "S": "....x...x...", "H": "x.x.x.x.x.x."},),
        major=_progressions("I IV I V", "I V vi IV", "I I IV IV V V I I", "I IV V I", "I vi IV V"),
        minor=_progressions("i bVII bVI bVII", "i iv bVII i"),
        bass=(("rootfifth", "bass_finger"), ("rootfifth", "bass_upright")),
        comp=(("boomchick", "guitar_twang"), ("strum8", "guitar_clean"), ("boomchick", "guitar_clean")),
        comp2=(None, None, ("pad", "organ")),
        lead=("guitar_twang", "violin", "steel"),
        lead_scales=(("major_pent", "major"), ("minor_pent",)),
        lead_rhythm=((2, 5), (4, 3), (1, 2), (8, 1)),
        lead_rest=0.2, lead_bend_p=0.3,
    ),
    "disco": _Style(
        tempo=(110, 132), swing16=(0.5, 0.54), minor_p=0.6, jitter=0.004, fill_p=0.2,
        patterns=(
            {"K": "X...X...X...X...", "P": "....X.......X...", "H": "x.x.x.x.x.x.x.x.",
             "O": "..X...X...X...X."},
            {"K": "X...X...X...X...", "S": "....X.......X...", "H": "xoxoxoxoxoxoxoxo",
             "O": "..x...x...x...x."},
        ),
        major=_progressions("Imaj7 ii7 iii7 ii7", "ii7 V7", "Imaj7 IVmaj7", "vi7 ii7 V7 Imaj7"),
        minor=_progressions("i7 iv7", "i7 bVII7 bVImaj7 V7", "i7 i7 iv7 bVII7"),
        bass=(("octave", "bass_synth"), ("octave", "bass_finger")),
        comp=(("stab16", "guitar_mute"), ("stab16", "epiano"), ("offbeat", "piano")),
        comp2=(("pad", "strings"), ("pad", "synthpad"), ("pad", "strings")),
        lead=("violin", "synth_lead", "brass"),
        lead_scales=(("major", "major_pent"), ("dorian", "minor_pent")),
        lead_rhythm=((2, 3), (4, 3), (8, 2), (1, 1)),
        lead_rest=0.3, lead_octave=12, levels={"kick": 2.0, "comp2": 2.0},
    ),
    "hiphop": _Style(
        tempo=(78, 102), swing16=(0.54, 0.64), minor_p=0.75, jitter=0.005, fill_p=0.05, crash_p=0.1,
        patterns=(
            {"K": "X......x..X.....", "S": "....X.......X...", "H": "x.x.x.x.x.x.x.x."},
            {"K": "X..x......X..x..", "S": "....X.......X...", "H": "x.xxx.x.x.xxx.x."},
            {"K": "X.X.......X.....", "S": "....X..o....X...", "H": "x.x.x.x.x.x.x.x."},
            {"K": "X......X.X......", "P": "....X.......X...", "H": "x.x.x.x.x.x.x.xo"},
        ),
        major=_progressions("Imaj7 vi7", "IVmaj7 iii7 ii7 Imaj7", "Imaj7 IVmaj7"),
        minor=_progressions("i9 iv9", "i7 bVImaj7", "bVImaj7 v7 i7 i7", "i7 iv7 bVII7 bIIImaj7"),
        bass=(("sub", "bass_sub"),),
        comp=(("lofi", "epiano"), ("lofi", "piano"), ("lofi", "strings")),
        comp2=(None, None, ("pad", "synthpad")),
        lead=("bell", "flute", "vibes"),
        lead_scales=(("major_pent",), ("minor_pent", "dorian")),
        lead_rhythm=((4, 2), (8, 3), (16, 1), (2, 2)),
        lead_rest=0.45, lead_p=0.5, lead_octave=12,
        levels={"kick": 3.0, "drums": 2.0, "bass": 2.0, "lead": -4.0},
        lofi_p=0.6,
    ),
    "jazz": _Style(
        tempo=(90, 210), swing8=(0.6, 0.68), minor_p=0.3, waltz_p=0.1, chords_per_bar=(1, 2),
        jitter=0.01, fill_p=0.0, crash_p=0.3,
        patterns=(
            {"Y": "X...X.x.X...X.x.", "F": "....X.......X...", "K": "o...o...o...o..."},
            {"Y": "X...X.x.X...X.x.", "F": "....X.......X...", "B": "x.o.x.o.x.o.x.o."},
        ),
        waltz_patterns=({"Y": "X...X.x.X...", "F": "....X...X...", "K": "o..........."},),
        major=_progressions("ii7 V7 Imaj7 Imaj7", "Imaj7 vi7 ii7 V7", "iii7 VI7 ii7 V7",
                            "Imaj7 IV7 iii7 VI7 ii7 V7 Imaj7 Imaj7"),
        minor=_progressions("iihd7 V7 i7 i7", "i7 iv7 iihd7 V7"),
        bass=(("walking", "bass_upright"),),
        comp=(("jazz", "piano"), ("jazz", "epiano"), ("jazz", "guitar_clean")),
        lead=("sax", "trumpet", "vibes", "piano"),
        lead_scales=(("bebop", "major"), ("dorian",)),
        lead_rhythm=((2, 6), (4, 2), (1, 1), (6, 1)),
        lead_rest=0.18, lead_p=0.8, lead_bend_p=0.1,
        levels={"kick": -10.0, "cymbals": 2.0, "drums": -6.0},
        reverb=(0.6, 1.6),
    ),
    "metal": _Style(
        tempo=(90, 200), minor_p=0.9, power_p=1.0, jitter=0.003, fill_p=0.5,
        patterns=(
            {"K": "XXXXXXXXXXXXXXXX", "S": "....X.......X...", "C": "X...X...X...X..."},
            {"K": "X.X.X.X.X.X.X.X.", "S": ".X.X.X.X.X.X.X.X", "Y": "X.X.X.X.X.X.X.X."},
            {"K": "X.XXX.XXX.XXX.XX", "S": "....X.......X...", "H": "X.x.X.x.X.x.X.x."},
            {"K": "XX.XXX.XXX.XXX.X", "S": "........X.......", "C": "X.......X......."},
        ),
        major=_progressions("I bVII IV I", "I bIII IV I"),
        minor=_progressions("i bVI bVII i", "i bII i bVII", "i i bVI bVII", "i iv bVI v", "i bVII bVI bVII"),
        bass=(("follow", "bass_pick"),),
        comp=(("chug", "guitar_chug"), ("power8", "guitar_dist"), ("chug", "guitar_chug")),
        comp2=(None, None, ("pad", "strings")),
        lead=("lead_dist",),
        lead_scales=(("minor", "major_pent"), ("minor", "phrygian", "harmonic_minor")),
        lead_rhythm=((1, 6), (2, 3), (4, 1), (8, 1)),
        lead_rest=0.1, lead_p=0.5, lead_bend_p=0.15, lead_octave=12,
        levels={"comp": 5.0, "cymbals": 2.0},
        comp_drive=(8.0, 25.0), lead_drive=(6.0, 15.0), bass_drive=(1.5, 4.0),
    ),
    "pop": _Style(
        tempo=(90, 130), swing16=(0.5, 0.56), minor_p=0.3, jitter=0.004,
        patterns=(
            {"K": "X.......X.......", "S": "....X.......X...", "H": "x.x.x.x.x.x.x.x."},
            {"K": "X.....X...X.....", "S": "....X.......X...", "H": "xoxoxoxoxoxoxoxo"},
            {"K": "X...X...X...X...", "P": "....X.......X...", "H": "..x...x...x...x."},
        ),
        major=_progressions("I V vi IV", "vi IV I V", "I vi IV V", "I IV vi V", "IV I V vi"),
        minor=_progressions("i bVI bIII bVII", "i bVII bVI bVII", "i iv bVI bVII"),
        bass=(("root8", "bass_synth"), ("root8", "bass_finger"), ("pop", "bass_synth")),
        comp=(("block", "piano"), ("arpeggio", "piano"), ("strum8", "guitar_clean"), ("pad", "synthpad")),
        comp2=(None, ("pad", "synthpad"), ("pad", "strings")),
        lead=("voice", "synth_lead", "voice"),
        lead_scales=(("major", "major_pent"), ("minor", "minor_pent")),
        lead_rhythm=((2, 4), (4, 4), (8, 2), (1, 1)),
        lead_rest=0.25, lead_octave=12,
    ),
    "reggae": _Style(
        tempo=(62, 92), swing8=(0.55, 0.66), minor_p=0.5, jitter=0.008, fill_p=0.15, crash_p=0.3,
        patterns=(
            {"K": "........X.......", "R": "........X.......", "H": "x.x.x.x.x.x.x.x."},
            {"K": "X...X...X...X...", "R": "....X.......X...", "H": "..x...x...x...x."},
            {"K": "........X.......", "R": "........X.......", "H": "x.xxx.xxx.xxx.xx",
             "O": "..............x."},
        ),
        major=_progressions("I IV", "I IV V IV", "I vi IV V", "I V IV I"),
        minor=_progressions("i iv", "i bVII", "i iv bVII i"),
        bass=(("reggae", "bass_sub"), ("reggae", "bass_finger")),
        comp=(("skank", "guitar_mute"), ("skank", "organ"), ("skank", "piano")),
        comp2=(("bubble", "organ"), None),
        lead=("melodica", "organ", "brass"),
        lead_scales=(("major_pent",), ("minor_pent", "dorian")),
        lead_rhythm=((2, 3), (4, 3), (6, 1), (8, 1)),
        lead_rest=0.35, lead_p=0.55, lead_octave=12,
        levels={"bass": 4.0, "drums": 4.0, "cymbals": -2.0, "comp": 6.0},
    ),
    "rock": _Style(
        tempo=(95, 165), minor_p=0.35, power_p=0.6, jitter=0.005, fill_p=0.5,
        patterns=(
            {"K": "X.......X.....x.", "S": "....X.......X...", "H": "x.x.x.x.x.x.x.x."},
            {"K": "X.....X.X.......", "S": "....X.......X...", "Y": "x.x.x.x.x.x.x.x."},
            {"K": "X.X.....X.X.....", "S": "....X.......X...", "H": "x.x.x.x.x.x.x.x."},
        ),
        major=_progressions("I IV V IV", "I bVII IV I", "I V IV IV", "I IV I V", "I bIII IV I"),
        minor=_progressions("i bVII bVI bVII", "i bIII bVII iv", "i iv bVI bVII"),
        bass=(("root8", "bass_pick"), ("root8", "bass_finger")),
        comp=(("power8", "guitar_dist"), ("strum8", "guitar_dist"), ("strum8", "guitar_clean")),
        comp2=(None, ("pad", "organ")),
        lead=("lead_dist",),
        lead_scales=(("minor_pent", "major_pent"), ("minor_pent", "blues")),
        lead_rhythm=((2, 4), (4, 3), (8, 1), (1, 2)),
        lead_rest=0.25, lead_bend_p=0.3, lead_octave=12,
        levels={"comp": 3.0},
        comp_drive=(2.5, 7.0), lead_drive=(3.0, 9.0), bass_drive=(0.0, 1.5),
    ),
}

_PIECE_STEM = {"K": "kick", "S": "drums", "R": "drums", "P": "drums", "T": "drums", "M": "drums",
               "L": "drums", "I": "drums", "H": "cymbals", "O": "cymbals", "F": "cymbals",
               "Y": "cymbals", "C": "cymbals", "B": "cymbals"}
_VELOCITY = {"o": 0.3, "x": 0.7, "X": 1.0}
_STEMS = ("kick", "drums", "cymbals", "bass", "comp", "comp2", "lead")


# --------------------------------------------------------------------------------------------
# Composition: a score of timed events, independent of the sample rate

Note = tuple[float, float, tuple[int, ...], float, float]  # start, duration, pitches, velocity, art
Hit = tuple[float, str, float]  # start, drum piece, velocity


class _Grid:
    """Maps (bar, 16th step) to seconds, with swing and a start offset into the song."""

    def __init__(self, bpm: float, beats: int, swing8: float, swing16: float, offset: float) -> None:
        self.beat = 60.0 / bpm
        self.beats = beats
        self.steps = 4 * beats
        self.bar = beats * self.beat
        # Swing delays the off-beat 8th (swing8) and the off-beat 16th within each 8th (swing16).
        self.frac = (0.0, swing16 * swing8, swing8, swing8 + swing16 * (1.0 - swing8))
        self.offset = offset

    def t(self, bar: int, step: int) -> float:
        beat, sub = divmod(step, 4)
        return (bar * self.beats + beat + self.frac[sub]) * self.beat - self.offset


@dataclass
class _Part:
    stem: str
    voice: _Voice | None
    voice_name: str
    notes: list[Note] = field(default_factory=list)
    drive: float = 0.0
    lowpass: float = 0.0


@dataclass
class _Song:
    genre: str
    bpm: float
    seconds: float
    parts: list[_Part]
    hits: list[Hit]
    kit: dict[str, float]
    levels: dict[str, float]
    pans: dict[str, float]
    sends: dict[str, float]
    rt60: float
    wet: float
    master: dict[str, float]


class _Composer:
    """Writes one song's score from a style and a random generator."""

    def __init__(self, genre: str, seconds: float, rng: np.random.Generator) -> None:
        self.genre = genre
        self.style = style = _STYLES[genre]
        self.rng = rng
        self.seconds = seconds
        self.bpm = float(rng.uniform(*style.tempo))
        self.waltz = rng.random() < style.waltz_p
        beats = 3 if self.waltz else 4
        offset_beats = rng.uniform(0.0, 4.0 * beats)
        self.grid = _Grid(self.bpm, beats, rng.uniform(*style.swing8), rng.uniform(*style.swing16),
                          offset_beats * 60.0 / self.bpm)
        self.n_bars = int(math.ceil((seconds + self.grid.offset) / self.grid.bar)) + 1
        self.minor = rng.random() < style.minor_p
        self.tonic = int(rng.integers(12))
        progressions = style.minor if self.minor else style.major
        self.progression = progressions[int(rng.integers(len(progressions)))]
        self.per_bar = style.chords_per_bar[int(rng.integers(len(style.chords_per_bar)))]
        self.power = rng.random() < style.power_p
        self._sections()
        self._drum_patterns()

    # -- helpers ------------------------------------------------------------------------------

    def pick(self, options: Sequence[_T]) -> _T:
        return options[int(self.rng.integers(len(options)))]

    def chords(self, bar: int) -> list[tuple[int, int, Chord]]:
        """The chords of a bar as (first step, end step, chord)."""
        k = self.per_bar if self.grid.beats % self.per_bar == 0 else 1
        span = self.grid.steps // k
        prog = self.progression
        return [(i * span, (i + 1) * span, prog[(bar * k + i) % len(prog)]) for i in range(k)]

    def chord_at(self, bar: int, step: int) -> Chord:
        for s0, s1, chord in self.chords(bar):
            if s0 <= step < s1:
                return chord
        return self.chords(bar)[-1][2]

    def note(self, notes: list[Note], bar: int, step: int, length: float, pitches: tuple[int, ...],
             vel: float, art: float = 0.0, legato: float = 0.92) -> None:
        """Add a note from (bar, step) lasting ``length`` 16ths, humanised in time and velocity."""
        g = self.grid
        start = g.t(bar, step)
        whole, part = divmod(length, 1.0)
        end = g.t(bar, step + int(whole)) + part * g.beat / 4.0
        dur = (end - start) * legato
        if start + dur < -0.5 or start > self.seconds:
            return
        start += self.rng.normal(0.0, self.style.jitter)
        notes.append((start, dur, pitches, vel * self.rng.uniform(0.88, 1.0), art))

    def bass_root(self, chord: Chord, low: int = 28) -> int:
        return low + (self.tonic + chord[0] - low) % 12

    def voicing(self, chord: Chord, center: int, prev: tuple[int, ...] | None) -> tuple[int, ...]:
        """Chord tones near ``center``, in the inversion closest to the previous voicing."""
        root, intervals = chord
        if self.power or intervals == _QUALITIES["5"]:
            base = 40 + (self.tonic + root - 40) % 12
            return (base, base + 7, base + 12)
        tones = [self.tonic + root + i for i in intervals]
        best: tuple[int, ...] = ()
        best_cost = math.inf
        for inv in range(len(tones)):
            shape = tones[inv:] + [x + 12 for x in tones[:inv]]
            lift = 12 * round((center - sum(shape) / len(shape)) / 12)
            cand = tuple(x + lift for x in shape)
            cost = abs(sum(cand) / len(cand) - center)
            if prev is not None and len(prev) == len(cand):
                cost += 0.5 * sum(abs(a - b) for a, b in zip(cand, prev))
            if cost < best_cost:
                best, best_cost = cand, cost
        return best

    # -- structure and drums ------------------------------------------------------------------

    def _sections(self) -> None:
        length = self.style.section_bars
        self.section_of = [b // length for b in range(self.n_bars)]
        n_sections = self.section_of[-1] + 1
        self.chorus = [self.rng.random() < 0.5 for _ in range(n_sections)]
        self.lead_on = [self.rng.random() < self.style.lead_p for _ in range(n_sections)]
        self.section_len = length

    def _drum_patterns(self) -> None:
        style, rng = self.style, self.rng
        self.has_drums = rng.random() < style.drums_p
        patterns = style.waltz_patterns if self.waltz else style.patterns
        if self.waltz and not patterns:
            patterns = ({"K": "X...........", "S": "....x...x...", "H": "x.x.x.x.x.x."},)
        verse = self.pick(patterns)
        chorus = self.pick(patterns)
        self.bar_pattern = [chorus if self.chorus[self.section_of[b]] else verse for b in range(self.n_bars)]

    def drums(self) -> list[Hit]:
        hits: list[Hit] = []
        if not self.has_drums:
            return hits
        style, rng, g = self.style, self.rng, self.grid
        jitter = style.jitter * 0.7
        fill_every = 4
        crash_next = False  # a fill lands on a crash in the next bar
        for bar in range(self.n_bars):
            pattern = self.bar_pattern[bar]
            in_section = bar % self.section_len
            fill_from = g.steps
            if style.fill_p and (in_section + 1) % fill_every == 0 and rng.random() < style.fill_p:
                fill_from = g.steps - 4 * int(rng.integers(1, 3))
            if crash_next or (in_section == 0 and rng.random() < style.crash_p):
                hits.append((g.t(bar, 0) + rng.normal(0, jitter), "C", 1.0 if crash_next else 0.9))
            crash_next = False
            for piece, steps in pattern.items():
                for step, ch in enumerate(steps[: g.steps]):
                    if ch == "." or step >= fill_from:
                        continue
                    vel = _VELOCITY[ch] * rng.uniform(0.85, 1.0)
                    hits.append((g.t(bar, step) + rng.normal(0, jitter), piece, vel))
            if self.genre == "jazz":
                # Snare and kick "comping": sparse, unpredictable accents against the ride.
                for step in range(2, g.steps, 4):
                    if rng.random() < 0.2:
                        hits.append((g.t(bar, step) + rng.normal(0, jitter), "S", rng.uniform(0.2, 0.5)))
                if rng.random() < 0.15:
                    step = int(rng.integers(g.steps))
                    hits.append((g.t(bar, step), "K", rng.uniform(0.5, 0.8)))
            if fill_from < g.steps:
                toms = ("S", "T", "M", "L")
                n = g.steps - fill_from
                for i, step in enumerate(range(fill_from, g.steps)):
                    if rng.random() < 0.8:
                        piece = toms[min(3, i * 4 // n)] if rng.random() < 0.7 else "S"
                        vel = 0.6 + 0.4 * i / n
                        hits.append((g.t(bar, step) + rng.normal(0, jitter), piece, vel))
                crash_next = True
        return [h for h in hits if -1.0 < h[0] < self.seconds]

    def kick_steps(self, bar: int) -> list[int]:
        kick = self.bar_pattern[bar].get("K", "") if self.has_drums else ""
        return [i for i, ch in enumerate(kick[: self.grid.steps]) if ch in "xX"]

    # -- bass ---------------------------------------------------------------------------------

    def bass(self, rhythm: str) -> list[Note]:
        notes: list[Note] = []
        rng, g = self.rng, self.grid
        steps = g.steps
        reggae_riffs = (
            ((2, 2, 0), (4, 2, 0), (6, 2, 7), (10, 4, 12), (14, 2, 10)),
            ((0, 3, 0), (3, 1, 0), (6, 2, 3), (8, 4, 7), (12, 2, 5), (14, 2, 7)),
            ((2, 4, 0), (6, 2, 12), (10, 2, 7), (12, 4, 5)),
        )
        riff = self.pick(reggae_riffs)
        prev = 36
        for bar in range(self.n_bars):
            chords = self.chords(bar)
            for ci, (s0, s1, chord) in enumerate(chords):
                root = self.bass_root(chord)
                third = 3 if 3 in chord[1] and 4 not in chord[1] else 4
                if rhythm in ("root8", "pop"):
                    for s in range(s0, s1, 2):
                        if rhythm == "pop" and (s % 8) == 6:
                            continue
                        pitch = root + (7 if s == s1 - 2 and rng.random() < 0.2 else 0)
                        self.note(notes, bar, s, 2, (pitch,), 0.9 if s % 4 == 0 else 0.75, legato=0.85)
                elif rhythm == "octave":
                    for s in range(s0, s1, 2):
                        self.note(notes, bar, s, 1.5, (root + 12 * ((s // 2) % 2),), 0.85, legato=0.8)
                elif rhythm == "follow":
                    kicks = [k for k in self.kick_steps(bar) if s0 <= k < s1] or list(range(s0, s1, 2))
                    for k in kicks:
                        self.note(notes, bar, k, 1, (root,), 0.9, legato=0.9)
                elif rhythm == "sub":
                    kicks = [k for k in self.kick_steps(bar) if s0 <= k < s1] or [s0]
                    for i, k in enumerate(kicks):
                        end = kicks[i + 1] if i + 1 < len(kicks) else s1
                        self.note(notes, bar, k, max(1, end - k), (root,), 1.0, legato=0.95)
                elif rhythm == "boogie":
                    line = (0, third, 7, 9, 10, 9, 7, third)
                    for beat in range((s1 - s0) // 4):
                        pitch = root + line[(beat + 4 * (bar % 2)) % 8]
                        for half in (0, 2):
                            self.note(notes, bar, s0 + 4 * beat + half, 2, (pitch,), 0.9 - 0.2 * (half > 0),
                                      legato=0.8)
                elif rhythm == "walking":
                    nxt = self.chords(bar + 1)[0][2] if ci == len(chords) - 1 else chords[ci + 1][2]
                    next_root = self.bass_root(nxt)
                    beats = (s1 - s0) // 4
                    for beat in range(beats):
                        # Stay near the previous note but drift back towards the middle of the
                        # double bass, so that the line does not climb away over many bars.
                        anchor = 0.5 * (prev + 38)
                        if beat == 0:
                            pitch = root + 12 * round((anchor - root) / 12)
                        elif beat == beats - 1:
                            target = next_root + 12 * round((anchor - next_root) / 12)
                            pitch = target + (1 if rng.random() < 0.5 else -1)
                        else:
                            tone = chord[1][int(rng.integers(len(chord[1])))] % 12
                            pitch = root + tone
                            pitch += 12 * round((anchor - pitch) / 12)
                        pitch = min(max(pitch, 28), 50)
                        self.note(notes, bar, s0 + 4 * beat, 4, (pitch,), 0.85, legato=0.9)
                        prev = pitch
                elif rhythm == "rootfifth":
                    for beat in range((s1 - s0) // 4):
                        s = s0 + 4 * beat
                        if self.waltz and beat > 0:
                            continue
                        pitch = root if beat % 2 == 0 else root + 7 - (12 if rng.random() < 0.5 else 0)
                        self.note(notes, bar, s, 3, (max(pitch, 26),), 0.9, legato=0.85)
                elif rhythm == "reggae":
                    for s, length, interval in riff:
                        if s0 <= s < s1 and s < steps:
                            self.note(notes, bar, s, length, (root + interval,), 0.95, legato=0.8)
                elif rhythm == "pizz":
                    for beat in range(0, (s1 - s0) // 4, 3 if self.waltz else 2):
                        self.note(notes, bar, s0 + 4 * beat, 2, (root + (7 if beat else 0),), 0.8, legato=0.6)
                else:  # sustain
                    self.note(notes, bar, s0, s1 - s0, (root + 12,) if root < 36 else (root,), 0.85, legato=1.0)
        return notes

    # -- harmony ------------------------------------------------------------------------------

    def comp(self, rhythm: str, center: int) -> list[Note]:
        notes: list[Note] = []
        rng = self.rng
        prev: tuple[int, ...] | None = None
        stab = self.pick(("..x...x...x...x.", ".xx..x.x.xx..x.x", "x..x..x...x..x..", "..xx..x...xx..x."))
        arp16 = rng.random() < 0.4
        for bar in range(self.n_bars):
            for s0, s1, chord in self.chords(bar):
                voiced = self.voicing(chord, center, prev)
                prev = voiced
                if rhythm == "pad":
                    self.note(notes, bar, s0, s1 - s0, voiced, 0.8, legato=1.02)
                elif rhythm == "block":
                    for s in range(s0, s1, 4):
                        self.note(notes, bar, s, 4, voiced, 0.9 if s == 0 else 0.7, legato=0.85)
                elif rhythm in ("strum8", "power8"):
                    sustain_bar = rhythm == "power8" and rng.random() < 0.25
                    if sustain_bar:
                        self.note(notes, bar, s0, s1 - s0, voiced, 0.95, legato=0.95)
                        continue
                    for s in range(s0, s1, 2):
                        down = (s // 2) % 2 == 0
                        strum = 0.012 if down else -0.008
                        self.note(notes, bar, s, 2, voiced, (0.9 if s % 4 == 0 else 0.7), strum,
                                  legato=0.9 if rhythm == "strum8" else 0.75)
                elif rhythm == "boomchick":
                    beats = (1, 2) if self.waltz else (1, 3)
                    for beat in beats:
                        s = 4 * beat
                        if s0 <= s < s1:
                            self.note(notes, bar, s, 1.5, voiced, 0.8, 0.01, legato=0.9)
                elif rhythm == "shuffle":
                    for s in range(s0, s1, 2):
                        accent = (s // 4) % 2 == 1 and s % 4 == 0
                        vel = 0.9 if accent else (0.7 if s % 4 == 0 else 0.5)
                        self.note(notes, bar, s, 1.5, voiced, vel, 0.006, legato=0.8)
                elif rhythm == "skank":
                    for s in (4, 12):
                        if s0 <= s < s1:
                            self.note(notes, bar, s, 1, voiced, 0.9, 0.004, legato=0.7)
                elif rhythm == "bubble":
                    for s in range(s0, s1):
                        if s % 4 == 2:
                            self.note(notes, bar, s, 1, voiced, 0.7, legato=0.7)
                        elif s % 8 == 3:
                            self.note(notes, bar, s, 1, voiced, 0.4, legato=0.6)
                elif rhythm == "stab16":
                    for s in range(s0, s1):
                        if stab[s % 16] == "x":
                            self.note(notes, bar, s, 1, voiced, 0.8, 0.004, legato=0.7)
                elif rhythm == "offbeat":
                    for s in range(s0 + 2, s1, 4):
                        self.note(notes, bar, s, 1.5, voiced, 0.75, legato=0.8)
                elif rhythm == "jazz":
                    choices = [s for s in (0, 2, 6, 8, 10, 14) if s0 <= s < s1]
                    count = min(len(choices), int(rng.integers(1, 4)))
                    for s in sorted(int(x) for x in rng.choice(choices, size=count, replace=False)):
                        length = float(self.pick((1, 2, 3, 6)))
                        self.note(notes, bar, s, min(length, s1 - s), voiced, float(rng.uniform(0.5, 0.85)),
                                  0.004, legato=0.9)
                elif rhythm == "lofi":
                    self.note(notes, bar, s0, s1 - s0, voiced, 0.8, 0.02, legato=0.98)
                    if rng.random() < 0.4 and s0 + 10 < s1:
                        self.note(notes, bar, s0 + 10, s1 - s0 - 10, voiced, 0.6, 0.02, legato=0.98)
                elif rhythm in ("arpeggio", "alberti"):
                    shape = voiced + (voiced[0] + 12,)
                    order = (0, 2, 1, 2) if rhythm == "alberti" else tuple(range(len(shape))) + tuple(
                        range(len(shape) - 2, 0, -1))
                    step = 1 if (arp16 and rhythm == "arpeggio") else 2
                    for i, s in enumerate(range(s0, s1, step)):
                        pitch = shape[order[i % len(order)]]
                        self.note(notes, bar, s, 2 * step, (pitch,), 0.85 if s % 4 == 0 else 0.65,
                                  legato=1.0)
                elif rhythm == "chug":
                    kicks = [k for k in self.kick_steps(bar) if s0 <= k < s1]
                    if len(kicks) < 3:
                        kicks = list(range(s0, s1, 2))
                    for k in kicks:
                        self.note(notes, bar, k, 1, voiced, 0.95 if k % 4 == 0 else 0.8, legato=0.9)
                else:
                    raise AssertionError(rhythm)
        return notes

    # -- melody -------------------------------------------------------------------------------

    def lead(self, voice: _Voice, center: int) -> list[Note]:
        style, rng, g = self.style, self.rng, self.grid
        scale_names = style.lead_scales[1 if self.minor else 0]
        scale = _SCALES[self.pick(scale_names)]
        size = len(scale)
        base = center + (self.tonic - center) % 12 - 12 * ((self.tonic - center) % 12 > 6)
        lengths = np.array([n for n, _ in style.lead_rhythm])
        weights = np.array([w for _, w in style.lead_rhythm], dtype=float)
        weights /= weights.sum()
        unit = 2 * g.steps  # a motif lasts two bars
        lo, hi = -(size // 2), size + size // 2

        def motif() -> list[tuple[int, int, int]]:
            out = []
            pos = 0
            deg = int(rng.integers(0, size))
            while pos < unit:
                length = int(min(lengths[rng.choice(len(lengths), p=weights)], unit - pos))
                if rng.random() < style.lead_rest:
                    pos += length
                    continue
                if rng.random() < style.lead_leap:
                    deg += int(rng.choice((-4, -3, 3, 4)))
                else:
                    deg += int(rng.choice((-2, -1, -1, 0, 1, 1, 2)))
                if deg < lo or deg > hi:  # reflect back into the range
                    deg = lo + (lo - deg) if deg < lo else hi - (deg - hi)
                    deg = min(max(deg, lo), hi)
                out.append((pos, length, deg))
                pos += length
            return out

        def vary(m: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
            return [(p, n, d + int(rng.integers(-2, 3)) if rng.random() < 0.25 else d) for p, n, d in m]

        motifs = [motif(), motif()]
        notes: list[Note] = []
        for start_bar in range(0, self.n_bars, 2):
            section = self.section_of[start_bar]
            if not self.lead_on[section]:
                continue
            which = (start_bar % self.section_len) // 2
            if self.genre == "blues" and which % 2 == 1:
                continue  # call and response: the lead answers the band every other two bars
            shape = ("A", "A'", "B", "A'")[which % 4]
            line = motifs[0] if shape == "A" else vary(motifs[0]) if shape == "A'" else motifs[1]
            for pos, length, deg in line:
                bar = start_bar + pos // g.steps
                step = pos % g.steps
                if bar >= self.n_bars:
                    break
                pitch = base + scale[deg % size] + 12 * (deg // size)
                if step % 4 == 0:
                    # Strong beats lean on chord tones, so that the melody fits the harmony.
                    root, intervals = self.chord_at(bar, step)
                    pcs = {(self.tonic + root + i) % 12 for i in intervals}
                    for delta in (0, -1, 1, -2, 2):
                        if (pitch + delta) % 12 in pcs:
                            pitch += delta
                            break
                bend = 0.0
                if voice.bends and length >= 2 and rng.random() < style.lead_bend_p:
                    bend = -float(self.pick((1, 2, 2)))
                vel = 0.9 if step % 4 == 0 else 0.75
                self.note(notes, bar, step, length, (int(pitch),), vel, bend, legato=0.95)
        return notes

    # -- the whole song -----------------------------------------------------------------------

    def compose(self) -> _Song:
        style, rng = self.style, self.rng
        parts: list[_Part] = []
        bass_rhythm, bass_voice = self.pick(style.bass)
        comp_rhythm, comp_voice = self.pick(style.comp)
        comp2 = self.pick(style.comp2)
        lead_voice = self.pick(style.lead)

        def drive(span: tuple[float, float]) -> float:
            return float(rng.uniform(*span)) if span[1] > 0 else 0.0

        voice = _make_voice(bass_voice, rng)
        parts.append(_Part("bass", voice, bass_voice, self.bass(bass_rhythm), drive(style.bass_drive)))
        voice = _make_voice(comp_voice, rng)
        distorted = comp_voice in ("guitar_dist", "guitar_chug")
        comp_drive = drive(style.comp_drive) if distorted else 0.0
        center = int(rng.integers(57, 66))
        parts.append(_Part("comp", voice, comp_voice, self.comp(comp_rhythm, center), comp_drive))
        if comp2 is not None:
            rhythm, name = comp2
            voice = _make_voice(name, rng)
            parts.append(_Part("comp2", voice, name, self.comp(rhythm, center + int(rng.integers(0, 8)))))
        voice = _make_voice(lead_voice, rng)
        lead_center = 62 + style.lead_octave + int(rng.integers(-3, 4))
        lead_drive = drive(style.lead_drive) if lead_voice == "lead_dist" else 0.0
        parts.append(_Part("lead", voice, lead_voice, self.lead(voice, lead_center), lead_drive))
        if rng.random() < style.lofi_p:
            for part in parts:
                if part.stem in ("comp", "comp2", "lead"):
                    part.lowpass = float(rng.uniform(1200.0, 3500.0))
        hits = self.drums()

        # Kit: how each drum sounds, varied per song (the genre sets the broad character).
        heavy = self.genre == "metal"
        boomy = self.genre in ("hiphop", "reggae")
        kit = {
            "kick_hi": rng.uniform(100, 180), "kick_lo": rng.uniform(42, 60) if boomy else rng.uniform(48, 70),
            "kick_sweep": rng.uniform(0.02, 0.05), "kick_decay": rng.uniform(0.25, 0.55) if boomy
            else rng.uniform(0.08, 0.18) if heavy else rng.uniform(0.12, 0.3),
            "kick_click": rng.uniform(0.3, 0.8) if heavy else rng.uniform(0.0, 0.3),
            "snare_tone": rng.uniform(160, 260), "snare_decay": rng.uniform(0.08, 0.22),
            "snare_noise": rng.uniform(0.5, 0.9), "hat_decay": rng.uniform(0.03, 0.08),
            "hat_cut": rng.uniform(5000, 8000), "ride_decay": rng.uniform(0.5, 1.0),
            "crash_decay": rng.uniform(0.8, 1.6), "tom": rng.uniform(90, 140),
            "timpani": rng.uniform(80, 110),
        }

        levels = dict(_BASE_LEVELS)
        for stem, offset in style.levels.items():
            levels[stem] += offset
        for stem in levels:
            levels[stem] += rng.uniform(-3.0, 3.0)
        pan_comp = rng.uniform(-0.6, 0.6)
        pans = {"kick": 0.0, "drums": rng.uniform(-0.15, 0.15), "cymbals": rng.uniform(-0.5, 0.5),
                "bass": 0.0, "comp": pan_comp, "comp2": -pan_comp * rng.uniform(0.5, 1.0),
                "lead": rng.uniform(-0.25, 0.25)}
        send_scale = rng.uniform(0.5, 1.5)
        sends = {"kick": 0.05, "drums": 0.3, "cymbals": 0.2, "bass": 0.05, "comp": 0.4, "comp2": 0.5,
                 "lead": 0.35}
        sends = {k: v * send_scale for k, v in sends.items()}

        # Master chain settings, drawn regardless of genre so that loudness, brightness and noise
        # overlap between genres.
        master = {
            "highpass": float(np.exp(rng.uniform(np.log(20), np.log(250)))) if rng.random() < 0.5 else 0.0,
            "lowpass": float(np.exp(rng.uniform(np.log(1800), np.log(16000)))) if rng.random() < 0.6 else 0.0,
            "presence": rng.uniform(0.2, 1.0) if rng.random() < 0.3 else 0.0,
            "drive": float(np.exp(rng.uniform(np.log(0.5), np.log(4.0)))),
            "snr_db": rng.uniform(12.0, 55.0),
            "noise": float(rng.integers(3)),  # white, pink, brown
            "peak": rng.uniform(0.3, 0.95),
        }
        return _Song(self.genre, self.bpm, self.seconds, parts, hits, kit, levels, pans, sends,
                     float(rng.uniform(*style.reverb)), float(rng.uniform(*style.wet)), master)


# --------------------------------------------------------------------------------------------
# Rendering


def _add(buf: np.ndarray, start: int, seg: np.ndarray, gain: float) -> None:
    """Mix ``seg * gain`` into ``buf`` at ``start``, clipped to the buffer."""
    n = buf.shape[0]
    skip = 0
    if start < 0:
        skip = -start
        start = 0
    if start >= n or skip >= seg.shape[0]:
        return
    end = min(n, start + seg.shape[0] - skip)
    buf[start:end] += seg[skip : skip + end - start] * np.float32(gain)


def _sos(sr: int, kind: str, cutoff: float | tuple[float, float], order: int = 2) -> np.ndarray:
    # Keep cutoffs inside (0, Nyquist) whatever the sample rate, so every rate renders.
    nyq = 0.5 * sr
    if isinstance(cutoff, tuple):
        lo = min(cutoff[0], 0.4 * nyq)
        hi = min(max(cutoff[1], lo * 1.2), 0.9 * nyq)
        return signal.butter(order, (lo, hi), "bandpass", fs=sr, output="sos")
    return signal.butter(order, min(cutoff, 0.9 * nyq), kind, fs=sr, output="sos")


class _Renderer:
    """Turns a score into audio at one sample rate; caches what repeats within a song."""

    _CACHE_LIMIT = 30_000_000  # samples; bounds memory for hour-long songs

    def __init__(self, sr: int, n: int, noise_rng: np.random.Generator) -> None:
        self.sr = sr
        self.noise_rng = noise_rng
        self._t = np.zeros(0)
        self._tables: dict[tuple[int, int, int], np.ndarray] = {}
        self._notes: dict[tuple, np.ndarray] = {}
        self._cached = 0

    def time(self, m: int) -> np.ndarray:
        if self._t.shape[0] < m:
            self._t = np.arange(max(m, 2 * self._t.shape[0])) / self.sr
        return self._t[:m]

    def table(self, voice: _Voice, spectrum: tuple[float, ...], f0: float) -> np.ndarray:
        """One period of ``spectrum``, band-limited to the harmonics below Nyquist at ``f0``."""
        count = min(len(spectrum), max(1, int(0.45 * self.sr / f0)))
        key = (id(voice), id(spectrum), count)
        table = self._tables.get(key)
        if table is None:
            amps = np.asarray(spectrum[:count])
            norm = math.sqrt(0.5 * sum(a * a for a in voice.harmonics)) or 1.0
            spec = np.zeros(_TABLE_SIZE // 2 + 1, dtype=complex)
            spec[1 : count + 1] = -0.5j * _TABLE_SIZE * amps / norm
            table = np.fft.irfft(spec, _TABLE_SIZE).astype(np.float32)
            self._tables[key] = table
        return table

    def tone(self, voice: _Voice, midi: int, gate: int, bend: float) -> np.ndarray:
        sr = self.sr
        rel = max(1, int(voice.release * sr))
        m = gate + rel
        f0 = _midi_hz(midi)
        t = self.time(m)
        if voice.vibrato_depth or bend:
            semis = np.zeros(m)
            if bend:
                semis += bend * np.exp(-t / voice.bend_time)
            if voice.vibrato_depth:
                fade = np.clip((t - voice.vibrato_delay) / 0.3, 0.0, 1.0)
                semis += voice.vibrato_depth * fade * np.sin(2 * np.pi * voice.vibrato_rate * t)
            phase = np.cumsum(f0 * np.exp2(semis / 12.0)) / sr
        else:
            phase = f0 * t
        idx = (phase * _TABLE_SIZE).astype(np.int64) & _TABLE_MASK
        y = self.table(voice, voice.harmonics, f0)[idx]
        if voice.detune:
            idx2 = (phase * (_TABLE_SIZE * 2.0 ** (voice.detune / 1200.0))).astype(np.int64) & _TABLE_MASK
            y = 0.5 * (y + self.table(voice, voice.harmonics, f0)[idx2])
        if voice.bright:
            fade = np.exp(-t / voice.bright_decay).astype(np.float32)
            y = y + self.table(voice, voice.bright, f0)[idx] * fade
        if voice.bell_amp and voice.bell_ratio * f0 < 0.45 * sr:
            bell = np.sin(2 * np.pi * voice.bell_ratio * f0 * t) * np.exp(-t / voice.bell_decay)
            y = y + (voice.bell_amp * bell).astype(np.float32)
        # Envelope: attack ramp, decay towards the sustain level, linear release after the gate.
        if voice.decay:
            decay = voice.decay * (2.0 ** (-(midi - 60) / 24.0) if voice.keytrack else 1.0)
            env = voice.sustain + (1.0 - voice.sustain) * np.exp(-t / decay)
        else:
            env = np.ones(m)
        attack = int(voice.attack * sr)
        if attack > 1:
            ramp = min(attack, m)
            env[:ramp] *= np.linspace(0.0, 1.0, attack)[:ramp]
        env[gate:] *= np.linspace(1.0, 0.0, m - gate)
        return (y * env).astype(np.float32)

    def chord(self, voice: _Voice, pitches: tuple[int, ...], gate: int, art: float) -> np.ndarray:
        key = (id(voice), pitches, gate, art)
        seg = self._notes.get(key)
        if seg is not None:
            return seg
        if len(pitches) == 1:
            seg = self.tone(voice, pitches[0], gate, art)
        else:
            # art is the strum: seconds between strings, negative for an up-strum.
            offset = int(abs(art) * self.sr)
            order = pitches if art >= 0 else pitches[::-1]
            tones = [self.tone(voice, p, max(1, gate - i * offset), 0.0) for i, p in enumerate(order)]
            seg = np.zeros(max(i * offset + len(x) for i, x in enumerate(tones)), dtype=np.float32)
            for i, x in enumerate(tones):
                seg[i * offset : i * offset + len(x)] += x
            seg *= np.float32(1.0 / math.sqrt(len(pitches)))
        if self._cached > self._CACHE_LIMIT:
            self._notes.clear()
            self._cached = 0
        self._notes[key] = seg
        self._cached += seg.shape[0]
        return seg

    # -- drums --------------------------------------------------------------------------------

    def noise(self, m: int) -> np.ndarray:
        return self.noise_rng.standard_normal(m, dtype=np.float32)

    def drum_kit(self, kit: dict[str, float]) -> dict[str, np.ndarray]:
        sr = self.sr

        def seconds(s: float) -> tuple[int, np.ndarray]:
            m = max(2, int(s * sr))
            return m, self.time(m)

        def decay(t: np.ndarray, tau: float) -> np.ndarray:
            return np.exp(-t / tau)

        def band(x: np.ndarray, kind: str, cutoff: float | tuple[float, float]) -> np.ndarray:
            return signal.sosfilt(_sos(sr, kind, cutoff), x)

        def sweep(t: np.ndarray, f_hi: float, f_lo: float, tau: float) -> np.ndarray:
            freq = f_lo + (f_hi - f_lo) * np.exp(-t / tau)
            return np.sin(2 * np.pi * np.cumsum(freq) / sr)

        out: dict[str, np.ndarray] = {}
        m, t = seconds(0.6)
        out["K"] = (sweep(t, kit["kick_hi"], kit["kick_lo"], kit["kick_sweep"]) * decay(t, kit["kick_decay"])
                    + kit["kick_click"] * band(self.noise(m), "highpass", 2000.0) * decay(t, 0.004))
        m, t = seconds(0.4)
        f = kit["snare_tone"]
        body = (np.sin(2 * np.pi * f * t) + 0.5 * np.sin(2 * np.pi * 1.6 * f * t)) * decay(t, 0.05)
        rattle = band(self.noise(m), "highpass", 1500.0) * decay(t, kit["snare_decay"])
        out["S"] = (1.0 - kit["snare_noise"]) * body + kit["snare_noise"] * 1.6 * rattle
        m, t = seconds(0.12)
        out["R"] = (np.sin(2 * np.pi * 900 * t) + 0.6 * np.sin(2 * np.pi * 1650 * t)) * decay(t, 0.012) \
            + 0.3 * band(self.noise(m), "bandpass", (1500.0, 5000.0)) * decay(t, 0.006)
        m, t = seconds(0.35)
        bursts = sum(decay(np.maximum(t - d, 0.0), 0.008) * (t >= d) for d in (0.0, 0.011, 0.022))
        out["P"] = band(self.noise(m), "bandpass", (900.0, 2800.0)) * (0.6 * bursts + decay(t, 0.11)) * 2.0
        m, t = seconds(0.2)
        out["H"] = band(self.noise(m), "highpass", kit["hat_cut"]) * decay(t, kit["hat_decay"]) * 2.0
        m, t = seconds(0.12)
        out["F"] = band(self.noise(m), "highpass", kit["hat_cut"] * 0.8) * decay(t, 0.02) * 1.2
        m, t = seconds(0.6)
        out["O"] = band(self.noise(m), "highpass", kit["hat_cut"] * 0.9) * decay(t, 0.22) * 1.6
        m, t = seconds(1.6)
        bell = sum(np.sin(2 * np.pi * fr * t) for fr in (2870.0, 3456.0, 4123.0, 5187.0) if fr < 0.45 * sr)
        out["Y"] = (0.8 * band(self.noise(m), "highpass", 5000.0) * decay(t, kit["ride_decay"] * 0.6)
                    + 0.15 * bell * decay(t, kit["ride_decay"]))
        m, t = seconds(2.5)
        out["C"] = band(self.noise(m), "bandpass", (2500.0, 11000.0)) * decay(t, kit["crash_decay"]) * 1.5
        m, t = seconds(0.35)
        brush = np.minimum(t / 0.02, 1.0) * decay(t, 0.1)
        out["B"] = band(self.noise(m), "bandpass", (600.0, 5000.0)) * brush
        for piece, ratio in (("T", 1.5), ("M", 1.2), ("L", 1.0)):
            m, t = seconds(0.7)
            f = kit["tom"] * ratio
            out[piece] = (sweep(t, f * 1.4, f, 0.03) * decay(t, 0.3)
                          + 0.2 * band(self.noise(m), "bandpass", (400.0, 3000.0)) * decay(t, 0.01))
        m, t = seconds(2.5)
        f = kit["timpani"]
        out["I"] = sum(a * np.sin(2 * np.pi * f * r * t) for r, a in ((1.0, 1.0), (1.5, 0.5), (1.99, 0.3),
                                                                         (2.44, 0.15))) * decay(t, 0.9)
        return {k: (v / (np.max(np.abs(v)) or 1.0)).astype(np.float32) for k, v in out.items()}

    # -- effects ------------------------------------------------------------------------------

    def reverb_irs(self, rt60: float, count: int) -> list[np.ndarray]:
        """Decaying, darkened noise bursts: a cheap, dense room; one per output channel."""
        sr = self.sr
        m = max(2, int(min(rt60, 2.0) * sr))
        t = self.time(m)
        env = np.exp(-6.9 * t / rt60) * np.minimum(t / 0.005, 1.0)
        sos = _sos(sr, "lowpass", 5000.0)
        return [(signal.sosfilt(sos, self.noise(m)) * env * (1.0 / math.sqrt(sr * rt60 / 13.8))).astype(np.float32)
                for _ in range(count)]


def _convolve(x: np.ndarray, irs: list[np.ndarray]) -> list[np.ndarray]:
    # One forward transform of the input for all channels' impulse responses.
    n = x.shape[0]
    size = scipy.fft.next_fast_len(n + max(len(ir) for ir in irs) - 1, real=True)
    spec = scipy.fft.rfft(x, size)
    return [scipy.fft.irfft(spec * scipy.fft.rfft(ir, size), size)[:n].astype(np.float32) for ir in irs]


def _drive(x: np.ndarray, amount: float) -> np.ndarray:
    peak = float(np.max(np.abs(x))) or 1.0
    return np.tanh(x * np.float32(amount / peak)) * np.float32(1.0 / math.tanh(amount))


def _render(song: _Song, n: int, sr: int, channels: int, noise_rng: np.random.Generator) -> np.ndarray:
    r = _Renderer(sr, n, noise_rng)
    stems = {name: np.zeros(n, dtype=np.float32) for name in _STEMS}

    if song.hits:
        kit = r.drum_kit(song.kit)
        for start, piece, vel in song.hits:
            _add(stems[_PIECE_STEM[piece]], int(round(start * sr)), kit[piece], vel)

    for part in song.parts:
        buf = stems[part.stem]
        for start, dur, pitches, vel, art in part.notes:
            gate = max(1, int(round(dur * sr)))
            _add(buf, int(round(start * sr)), r.chord(part.voice, pitches, gate, art), vel)
        if part.drive:
            buf[:] = _drive(buf, part.drive)
            # A guitar cabinet: distortion fizz above a few kHz is what amplifiers filter away.
            buf[:] = signal.sosfilt(_sos(sr, "lowpass", 4500.0), buf)
        if part.lowpass:
            buf[:] = signal.sosfilt(_sos(sr, "lowpass", part.lowpass), buf)

    outs = [np.zeros(n, dtype=np.float32) for _ in range(channels)]
    send = np.zeros(n, dtype=np.float32)
    for name, stem in stems.items():
        gain = 10.0 ** (song.levels[name] / 20.0)
        if channels == 1:
            gains = [gain]
        else:
            angle = (song.pans[name] + 1.0) * math.pi / 4.0
            gains = [gain * math.sqrt(2.0) * math.cos(angle), gain * math.sqrt(2.0) * math.sin(angle)]
        for out, g in zip(outs, gains):
            out += stem * np.float32(g)
        send += stem * np.float32(gain * song.sends[name])
    del stems

    for out, wet in zip(outs, _convolve(send, r.reverb_irs(song.rt60, channels))):
        out += wet * np.float32(song.wet * 4.0)

    m = song.master
    peak = max(float(np.max(np.abs(out))) for out in outs) or 1.0
    noise_kind = int(m["noise"])
    for c, out in enumerate(outs):
        if m["highpass"]:
            out[:] = signal.sosfilt(_sos(sr, "highpass", m["highpass"]), out)
        if m["lowpass"]:
            out[:] = signal.sosfilt(_sos(sr, "lowpass", m["lowpass"]), out)
        if m["presence"]:
            out += signal.sosfilt(_sos(sr, "highpass", 3000.0), out).astype(np.float32) * np.float32(m["presence"])
        # Soft clipping with a song-specific drive: loudness relative to peak varies across songs.
        out[:] = np.tanh(out * np.float32(m["drive"] / peak)) * np.float32(1.0 / math.tanh(m["drive"]))

    level = math.sqrt(sum(float(np.mean(np.square(out, dtype=np.float64))) for out in outs) / channels)
    noise_gain = level * 10.0 ** (-m["snr_db"] / 20.0)
    for out in outs:
        noise = r.noise(n)
        if noise_kind == 1:  # pink (-3 dB/octave), Paul Kellett's economy filter
            noise = signal.lfilter([0.049922035, -0.095993537, 0.050612699, -0.004408786],
                                   [1.0, -2.494956002, 2.017265875, -0.522189400], noise)
        elif noise_kind == 2:  # brown (-6 dB/octave)
            noise = signal.lfilter([0.1], [1.0, -0.995], noise)
        std = float(np.std(noise)) or 1.0
        out += (noise * (noise_gain / std)).astype(np.float32)

    peak = max(float(np.max(np.abs(out))) for out in outs) or 1.0
    scale = np.float32(m["peak"] / peak)
    if channels == 1:
        return np.clip(outs[0] * scale, -1.0, 1.0)
    return np.clip(np.stack(outs, axis=1) * scale, -1.0, 1.0)


# --------------------------------------------------------------------------------------------
# Public API


def synthesize_song(genre: str, seconds: float = 30.0, *, seed: int = 0, index: int = 0,
                    sample_rate: int = SAMPLE_RATE, channels: int = 1) -> np.ndarray:
    """Synthesise one song of a genre.

    Parameters
    ----------
    genre : str
        One of :data:`GENRES`.
    seconds : float, optional
        Length in seconds, > 0 and <= 3600.
    seed : int, optional
        Seed of the whole collection (>= 0).
    index : int, optional
        Number of the song within its genre (>= 0); songs with different indexes differ.
    sample_rate : int, optional
        Samples per second, 8000 to 192000.
    channels : int, optional
        1 (mono) or 2 (stereo: instruments are panned, and the reverb differs per channel).

    Returns
    -------
    numpy.ndarray
        float32 samples in [-1, 1], shape ``(n,)`` for mono or ``(n, channels)``, where
        ``n = round(seconds * sample_rate)``. The peak level is random, between 0.3 and 0.95.

    Raises
    ------
    ParameterError
        If an argument is unknown or out of range.

    Notes
    -----
    The result depends only on the arguments: the same arguments give bit-identical audio in any
    process. The notes played do not depend on ``sample_rate`` or ``channels``.
    """
    genre_index = _check_genre(genre)
    seconds = _check_seconds(seconds)
    seed = _check_int("seed", seed, 0)
    index = _check_int("index", index, 0)
    sample_rate = _check_int("sample_rate", sample_rate, MIN_SAMPLE_RATE, MAX_SAMPLE_RATE)
    channels = _check_channels(channels)
    n = int(round(seconds * sample_rate))
    if n < 1:
        raise ParameterError(f"seconds={seconds!r} is shorter than one sample at {sample_rate} Hz")
    # Separate streams for the score and for noise: the score must not depend on how many noise
    # samples the sample rate needs.
    score_seq, noise_seq = np.random.SeedSequence([seed, genre_index, index]).spawn(2)
    song = _Composer(genre, seconds, np.random.default_rng(score_seq)).compose()
    return _render(song, n, sample_rate, channels, np.random.default_rng(noise_seq))


@dataclass(frozen=True)
class SynthSpec:
    """A synthetic dataset: which genres, how many songs each, how long, and how stored.

    Parameters
    ----------
    genres : tuple of str
        Genre names, each in :data:`GENRES`, without repeats.
    per_genre : int
        Songs per genre, >= 1.
    seconds : float
        Length of each song, > 0 and <= 3600.
    seed : int
        Seed of the collection, >= 0.
    fmt : str
        One of :data:`FORMATS`, or ``"mixed"`` to cycle through them by song index.
    sample_rate : int, optional
        8000 to 192000; with mp3 (or mixed) one of the MPEG rates (8000 ... 48000).
    channels : int, optional
        1 or 2.

    Raises
    ------
    ParameterError
        If a field is out of range.
    """

    genres: tuple[str, ...]
    per_genre: int
    seconds: float
    seed: int
    fmt: str
    sample_rate: int = SAMPLE_RATE
    channels: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.genres, str) or not isinstance(self.genres, Sequence):
            raise ParameterError(f"genres must be a sequence of genre names, got {self.genres!r}")
        genres = tuple(self.genres)
        if not genres:
            raise ParameterError("genres must name at least one genre, got none")
        for genre in genres:
            _check_genre(genre)
        if len(set(genres)) != len(genres):
            raise ParameterError(f"genres must not repeat, got {genres!r}")
        object.__setattr__(self, "genres", genres)
        object.__setattr__(self, "per_genre", _check_int("per_genre", self.per_genre, 1))
        object.__setattr__(self, "seconds", _check_seconds(self.seconds))
        object.__setattr__(self, "seed", _check_int("seed", self.seed, 0))
        object.__setattr__(self, "fmt", _check_fmt(self.fmt))
        rate = _check_int("sample_rate", self.sample_rate, MIN_SAMPLE_RATE, MAX_SAMPLE_RATE)
        if self.fmt in ("mp3", MIXED) and rate not in _MP3_RATES:
            raise ParameterError(
                f"sample_rate {rate} cannot be stored as mp3; use one of {', '.join(map(str, sorted(_MP3_RATES)))}"
            )
        object.__setattr__(self, "sample_rate", rate)
        object.__setattr__(self, "channels", _check_channels(self.channels))


def resolve_genres(genres: int | Sequence[str]) -> tuple[str, ...]:
    """Turn a genre count or a list of genre names into a tuple of genre names.

    Parameters
    ----------
    genres : int or sequence of str
        A number N from 1 to ``len(GENRES)`` (the first N of :data:`GENRES`), or genre names.

    Returns
    -------
    tuple of str
        The genres, in the order given (repeats removed).

    Raises
    ------
    ParameterError
        If N is out of range, a name is not a known genre, or no genre is given.
    """
    if isinstance(genres, str):
        genres = [genres]
    if not isinstance(genres, Iterable):
        count = _check_int("genres", genres, 1, len(GENRES))
        return GENRES[:count]
    names: list[str] = []
    for genre in genres:
        _check_genre(genre)
        if genre not in names:
            names.append(genre)
    if not names:
        raise ParameterError(f"no genres given; known genres: {', '.join(GENRES)}")
    return tuple(names)


def song_paths(out_dir: Path, spec: SynthSpec) -> list[tuple[Path, str, int]]:
    """List every song of a dataset with its file path.

    Parameters
    ----------
    out_dir : pathlib.Path
        Root folder of the dataset.
    spec : SynthSpec
        The dataset.

    Returns
    -------
    list of (pathlib.Path, str, int)
        ``(path, genre, index)`` with ``path = out_dir/<genre>/<genre>.<index:05d>.<ext>``, genre by
        genre in ``spec.genres`` order, then by index. With ``fmt == "mixed"`` the extension is
        ``FORMATS[index % len(FORMATS)]``.
    """
    out_dir = Path(out_dir)
    rows = []
    for genre in spec.genres:
        for index in range(spec.per_genre):
            ext = FORMATS[index % len(FORMATS)] if spec.fmt == MIXED else spec.fmt
            rows.append((out_dir / genre / f"{genre}.{index:05d}.{ext}", genre, index))
    return rows


def write_song(path: Path, genre: str, index: int, spec: SynthSpec) -> Path:
    """Synthesise one song and write it atomically.

    The audio goes to a hidden temporary file (its name starts with ``"."``) in the destination
    folder, which then replaces ``path``; readers never see a half-written file.

    Parameters
    ----------
    path : pathlib.Path
        Destination; its extension (wav, flac, ogg, mp3) chooses the format: 16-bit PCM for wav and
        flac, Vorbis for ogg, MPEG layer III for mp3. Missing folders are created.
    genre : str
        One of :data:`GENRES`.
    index : int
        Song number within the genre.
    spec : SynthSpec
        Length, seed, sample rate and channels of the song.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ParameterError
        If the extension is not one of :data:`FORMATS`, or another argument is invalid.
    """
    path = Path(path)
    ext = path.suffix.lower().lstrip(".")
    if ext not in _SF_FORMAT:
        raise ParameterError(f"{path}: unsupported extension {path.suffix!r}; expected one of {', '.join(FORMATS)}")
    if ext == "mp3" and spec.sample_rate not in _MP3_RATES:
        raise ParameterError(f"{path}: sample_rate {spec.sample_rate} cannot be stored as mp3")
    audio = synthesize_song(genre, spec.seconds, seed=spec.seed, index=index,
                            sample_rate=spec.sample_rate, channels=spec.channels)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt, subtype = _SF_FORMAT[ext]
    with atomic_path(path) as tmp:  # the temporary name has no extension: the format is named
        channels = 1 if audio.ndim == 1 else audio.shape[1]
        with sf.SoundFile(tmp, "w", spec.sample_rate, channels, format=fmt, subtype=subtype) as f:
            # A second at a time: libsndfile's Vorbis encoder crashes (SIGSEGV) on one large write.
            for start in range(0, audio.shape[0], spec.sample_rate):
                f.write(audio[start : start + spec.sample_rate])
    return path


def _write_item(item: tuple[Path, str, int], spec: SynthSpec) -> tuple[Path, Exception | None]:
    """Write one song of a dataset (in a worker); an error comes back as a value, to be raised in
    the caller's process as it was raised here (a runner would turn it into a reason string)."""
    path, genre, index = item
    try:
        return write_song(path, genre, index, spec), None
    except Exception as exc:  # noqa: BLE001 - raised again by write_dataset, type and message intact
        return path, exc


def _song_failed(item: tuple[Path, str, int], reason: str) -> tuple[Path, Exception | None]:
    # Only what _write_item does not catch gets here: a worker that died writing this song.
    return item[0], GenrifyIOError(f"{item[0]}: {reason}")


#: One song of a dataset, for any runner: ``SONG_WRITER((path, genre, index), spec)`` gives
#: ``(path, None)``, or ``(path, error)`` where it could not be written.
SONG_WRITER: Processor[tuple[Path, str, int], tuple[Path, Exception | None]] = Processor(_write_item, _song_failed)


def write_dataset(out_dir: str | Path, spec: SynthSpec, *, jobs: int | None = None, runner: Runner | None = None,
                  on_progress: Callable[[Path], None] | None = None) -> list[Path]:
    """Write every song of a dataset that is not there yet.

    Parameters
    ----------
    out_dir : str or pathlib.Path
        Root folder; songs go to ``out_dir/<genre>/`` (see :func:`song_paths`).
    spec : SynthSpec
        The dataset.
    jobs : int, optional
        Without ``runner``: worker processes (>= 1; default 1, which writes in this process). With
        more than one, songs are made in genrify's process pool
        (:class:`genrify.core.runner.LocalRunner`); the files are the same.
    runner : genrify.core.runner.Runner, optional
        Where the songs are made (default ``LocalRunner(jobs)``); a song depends only on the spec
        and its place in the dataset, so any runner makes the same files.
    on_progress : callable, optional
        Called in this process with each path as soon as its song is written.

    Returns
    -------
    list of pathlib.Path
        The paths written by this call, in :func:`song_paths` order. Songs whose file already
        exists are skipped (and not listed), so an interrupted run can be resumed.

    Raises
    ------
    ParameterError
        If ``jobs`` is not a positive integer, or is given together with ``runner``.
    Exception
        The first error met writing a song (as :func:`write_song` raised it; the run stops), or
        :class:`~genrify.errors.GenrifyIOError` where a worker died writing one.
    """
    if jobs is not None:
        jobs = _check_int("jobs", jobs, 1)
        if runner is not None:
            raise ParameterError("give either a runner or jobs, not both")
    runner = runner if runner is not None else LocalRunner(jobs or 1)
    todo = [(p, g, i) for p, g, i in song_paths(Path(out_dir), spec) if not p.exists()]
    if not todo:
        return []
    shown: dict[Path, Path] = {}
    items = todo
    if runner.remote:  # workers run in other folders: absolute paths, in a folder they can write
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        runner.check(folder=os.path.abspath(out_dir), writable=True, what="dataset's folder")
        items = [(p.absolute(), g, i) for p, g, i in todo]
        shown = {item[0]: given[0] for item, given in zip(items, todo, strict=True)}
    results = runner.run(SONG_WRITER, items, spec)
    try:
        for path, error in results:
            if error is not None:
                raise error
            if on_progress is not None:
                on_progress(shown.get(path, path))
    finally:
        # An error stops the run: the runner's generator, closed, cancels the songs not started.
        results.close()  # type: ignore[attr-defined]
    return [p for p, _, _ in todo]
