"""Is it music at all? A check that every model's answers pass through, so that silence, test tones,
noise, clicks, speech and animal sounds are flagged as unsure (``not music``) and never tagged.

A genre model answers every input with some genre, often confidently: before this check the built-in
model called random samples blues (0.62) and a square wave rock (0.58), and a trained model called
digital silence country (0.63). The check reads what the model already reads, each song's sampled
segments (no second decoding, about 3 ms a song), and judges every segment in up to three ways:

- **Signal rules** (:func:`segment_features`, :class:`SignalRules`), on the log-mel segments of any
  model (decibels or musicnn's compression, any rate and band count): *silence* (a level far below
  any music's), *tone* (the spectrum does not change and its energy sits in a few bands: sines,
  square waves, hum), *noise* (the spectrum does not change and is broad: white, pink, random
  samples) and *clicks* (nearly every frame silent, the rest isolated impulses). Their thresholds
  lie beyond the most extreme 0.5 % of music segments.
- **A segment classifier** (:class:`SegmentClassifier`) for what the rules leave: a multinomial
  logistic regression on the same measurements (level spread, pauses, syllable-rate modulation,
  centroid spread, sustained partials, low-band share, ...), music against speech, noise, tones and
  clicks. It is fitted on music (GTZAN excerpts, synthetic songs and sparse pieces) and on synthetic
  non-music only (generated signals; speech synthesised by ``espeak-ng``, needed to fit, never to
  run); its threshold lets about 2 % of held-out GTZAN segments through as not music.
- **Unlike music** (:class:`MusicDensity`), measured by ``benchmarks/not_music.py --density`` but
  not used by genrify: a Gaussian density of the pretrained ``MSD_musicnn`` tagger's 200-dimensional
  embedding, fitted on real music only (the GTZAN excerpts, see ``NOTICE``). A segment whose log
  density is below a threshold set from held-out music is unlike any music the density knows. It is
  off because, measured on real clips, it caught none of the speech and animal sounds it was meant
  for (they lie inside music's density of this embedding) while flagging 2.7 % of held-out GTZAN
  excerpts, one of 32 other real music clips and some synthetic music, and it would cost a trained
  model a second decoding of every song at musicnn's rate. Fitting and embedding live in the benchmark.

A song is *not music* when more than half of its segments are (so a silent intro or a spoken outro
does not count against a song); the reason is the commonest among them. Every setting was chosen by
fitting on one part of the music and measuring on another (``scripts/fit_musicness.py`` makes the
packaged file, ``benchmarks/not_music.py`` measures the check); no non-music recording was used to
fit anything.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from genrify.core.numeric import softmax
from genrify.errors import ModelFileError

if TYPE_CHECKING:
    from genrify.audio.features import FeatureParams
    from genrify.audio.segments import SongSegments

#: The check's version, part of the results cache's key: raise it whenever the check or its fitted
#: numbers change, so that cached answers are judged again.
CHECK_VERSION = 1
#: Why a song is not music, in the order that breaks ties between them.
REASONS: tuple[str, ...] = ("silence", "tone", "noise", "clicks", "speech", "unlike-music")
#: Where the packaged density and rule thresholds live.
DENSITY_PATH = Path(__file__).resolve().parents[1] / "models" / "pretrained" / "music_density.safetensors"
DENSITY_FORMAT = "genrify-music-density"
DENSITY_FORMAT_VERSION = 2
#: Share of a song's segments that must be non-music for the song to be (more than this).
SONG_SHARE = 0.5
#: The tagger and output whose embedding the density models (the built-in model's genre head reads
#: the same one, so it costs nothing there).
EMBEDDING = ("MSD_musicnn", "penultimate")
#: Names of :func:`segment_features`' columns.
FEATURES: tuple[str, ...] = ("level", "level_spread", "change", "peak_share", "flatness", "quiet_share", "burst",
                             "memory", "coherence", "low_share", "dips", "syllabic", "centroid_spread", "sustain",
                             "flux_spread")

# Frame energies this far under full scale count as nothing at all (below 16-bit dither).
_FLOOR_DB = -120.0
_FLOOR = 10.0 ** (_FLOOR_DB / 10.0)  # the same, as a power
# A frame more than this under the segment's loudest is quiet (for clicks: the gaps between them).
_QUIET_DB = 40.0


@lru_cache(maxsize=16)
def _full_scale(params: FeatureParams) -> float:
    """Total mel power of one frame of a full-scale sine (amplitude 1) at a mid frequency: levels are
    measured against it, so that thresholds mean the same for every model's features."""
    from genrify.audio.features import log_mel

    fmax = params.fmax or params.sample_rate / 2
    freq = min(1000.0, (params.fmin + fmax) / 2)
    t = np.arange(params.sample_rate, dtype=np.float64) / params.sample_rate
    power = to_power(log_mel(np.sin(2 * np.pi * freq * t).astype(np.float32), params), params)
    return float(np.median(power.sum(axis=0)))


def to_power(features: np.ndarray, params: FeatureParams) -> np.ndarray:
    """Mel power from log-mel features in ``params``' scale (decibels or musicnn's ``log10p``)."""
    x = np.asarray(features, dtype=np.float64)
    if params.scale == "log10p":
        return np.maximum(np.power(10.0, x) - 1.0, 0.0) / params.gain
    return params.ref * np.power(10.0, x / 10.0)


def segment_features(segments: np.ndarray, params: FeatureParams) -> np.ndarray:
    """The signal rules' measurements of each segment, ``(n, len(FEATURES))``.

    Parameters
    ----------
    segments
        ``(n, n_mels, frames)`` log-mel segments as a model reads them.
    params
        Their feature parameters.

    Returns
    -------
    numpy.ndarray
        Per segment (columns in :data:`FEATURES` order):

        - ``level``: mean frame power in dB against a full-scale sine;
        - ``level_spread``: spread (interquartile range, dB) of the frame levels: music rises and
          falls, a tone or a noise does not;
        - ``change``: mean distance between consecutive frames' spectral shapes (total variation of
          the normalised mel spectra, 0 to 1), on the loud frames only;
        - ``peak_share``: share of the mean spectrum's energy in its three strongest bands;
        - ``flatness``: spectral flatness of the mean spectrum (geometric over arithmetic mean of
          the bands' power, 0 to 1);
        - ``quiet_share``: share of frames more than 40 dB under the segment's loudest;
        - ``burst``: the loud frames' mean level minus their level three frames later (dB): an
          impulse dies at once, a note or a drum rings on;
        - ``memory``: how well each band's level a window later follows it (autocorrelation of the
          standardised band levels, weighted by the bands' energy): noise forgets, notes last;
        - ``coherence``: how much the bands' levels move together: noise's bands are independent;
        - ``low_share`` to ``flux_spread``: the measurements that tell speech, rumble and buzz
          from music (see :func:`_shape_features`).
    """
    # A few segments at a time: the measurements hold several float64 copies of the segments, which
    # for every segment of an hour-long song (--max-segments 0) would be hundreds of MB.
    step = SEGMENTS_AT_ONCE
    if len(segments) <= step:
        return _segment_features(segments, params)
    return np.concatenate([_segment_features(segments[i : i + step], params) for i in range(0, len(segments), step)])


#: Segments measured at once by :func:`segment_features` (each segment's measurements are its own).
SEGMENTS_AT_ONCE = 16


def _segment_features(segments: np.ndarray, params: FeatureParams) -> np.ndarray:
    """:func:`segment_features` of a few segments at once."""
    power = to_power(segments, params) / _full_scale(params)  # (n, bands, frames)
    n, bands, frames = power.shape
    frame_power = power.sum(axis=1)  # (n, frames)
    floor = _FLOOR
    frame_db = 10.0 * np.log10(frame_power + floor)
    out = np.zeros((n, len(FEATURES)))
    out[:, 0] = 10.0 * np.log10(frame_power.mean(axis=1) + floor)
    q75, q25 = np.percentile(frame_db, [75, 25], axis=1)
    out[:, 1] = q75 - q25
    loudest = frame_db.max(axis=1, keepdims=True)
    loud = frame_db > loudest - _QUIET_DB  # (n, frames)
    shape = power / (frame_power[:, None, :] + floor)
    tv = 0.5 * np.abs(np.diff(shape, axis=2)).sum(axis=1)  # (n, frames - 1)
    both = loud[:, 1:] & loud[:, :-1]
    out[:, 2] = (tv * both).sum(axis=1) / np.maximum(both.sum(axis=1), 1)
    mean_spectrum = power.mean(axis=2) + floor / bands  # (n, bands)
    top = np.sort(mean_spectrum, axis=1)[:, -3:].sum(axis=1)
    out[:, 3] = top / mean_spectrum.sum(axis=1)
    out[:, 4] = np.exp(np.log(mean_spectrum).mean(axis=1)) / mean_spectrum.mean(axis=1)
    out[:, 5] = 1.0 - loud.mean(axis=1)
    lag = 3
    later = frame_db[:, lag:]
    now = frame_db[:, :-lag]
    strong = now > loudest - 10.0  # the segment's loudest frames
    out[:, 6] = ((now - later) * strong).sum(axis=1) / np.maximum(strong.sum(axis=1), 1)
    # Band energies in dB, standardised over time: noise's are independent from one window to the
    # next (memory near 0) and from band to band (coherence near 1 / bands); music's notes last and
    # its onsets strike many bands at once.
    lag = max(1, -(-params.n_fft // params.hop_length))
    band_db = 10.0 * np.log10(power + floor / bands)
    z = band_db - band_db.mean(axis=2, keepdims=True)
    sd = z.std(axis=2, keepdims=True)
    live = sd[..., 0] > 1e-3  # (n, bands): bands that change at all
    z = np.divide(z, sd, out=np.zeros_like(z), where=sd > 1e-3)
    if frames > lag:
        ac = (z[:, :, lag:] * z[:, :, :-lag]).mean(axis=2)  # (n, bands)
        weight = mean_spectrum * live
        out[:, 7] = (ac * weight).sum(axis=1) / np.maximum(weight.sum(axis=1), 1e-300)
    nlive = np.maximum(live.sum(axis=1), 1)
    out[:, 8] = (z.sum(axis=1) ** 2).mean(axis=1) / nlive ** 2
    out[:, 9:] = _shape_features(power, frame_power, loud, tv, band_db, params)
    silent = frame_power.max(axis=1) <= floor
    out[silent, 1:] = 0.0  # nothing to measure in digital silence: the level says it all
    return out


@lru_cache(maxsize=16)
def _band_hz(params: FeatureParams) -> np.ndarray:
    """Centre frequency (Hz) of each mel band: the filters' weighted mean frequency."""
    from genrify.audio.melspec import mel_filter_bank

    bank = np.asarray(mel_filter_bank(params), dtype=np.float64)
    hz = np.arange(bank.shape[1]) * params.sample_rate / params.n_fft
    return (bank * hz).sum(axis=1) / np.maximum(bank.sum(axis=1), 1e-30)


def _shape_features(power: np.ndarray, frame_power: np.ndarray, loud: np.ndarray, tv: np.ndarray,
                    band_db: np.ndarray, params: FeatureParams) -> np.ndarray:
    """The measurements that tell speech, rumble and buzz from music (``low_share`` to
    ``flux_spread`` in :func:`segment_features`), in physical units (hertz, seconds) so that they
    mean the same at every model's rate, hop and band count."""
    n, _, frames = power.shape
    floor = _FLOOR
    hz = _band_hz(params)
    fps = params.sample_rate / params.hop_length
    out = np.zeros((n, 6))
    mean_spectrum = power.mean(axis=2)
    total = np.maximum(mean_spectrum.sum(axis=1), floor)
    # Rumble (brown noise, wind, traffic) lives under 150 Hz; music keeps energy above its bass.
    out[:, 0] = mean_spectrum[:, hz < 150.0].sum(axis=1) / total
    # Pauses: frames more than 6 dB under the segment's mean power (speech stops between words).
    out[:, 1] = (frame_power < 0.25 * frame_power.mean(axis=1, keepdims=True)).mean(axis=1)
    # Syllables: the share of the voice band's level modulation at 2.5-8 Hz (of 0.5-20 Hz).
    voice = (hz >= 150.0) & (hz <= 4000.0)
    env = 10.0 * np.log10(power[:, voice].sum(axis=1) + floor)
    env = np.maximum(env, env.max(axis=1, keepdims=True) - 60.0)
    env = (env - env.mean(axis=1, keepdims=True)) * np.hanning(frames)
    spec = np.abs(np.fft.rfft(env, axis=1)) ** 2
    mod_hz = np.fft.rfftfreq(frames, 1.0 / fps)
    band = (mod_hz >= 0.5) & (mod_hz <= 20.0)
    syl = (mod_hz >= 2.5) & (mod_hz <= 8.0)
    out[:, 2] = spec[:, syl].sum(axis=1) / np.maximum(spec[:, band].sum(axis=1), 1e-30)
    # Spread of the spectral centroid (octaves) over the loud frames: vowels and hisses alternate.
    octave = np.log2(np.maximum(hz, 20.0))
    centroid = (power * octave[None, :, None]).sum(axis=1) / np.maximum(frame_power, floor)
    loud_n = np.maximum(loud.sum(axis=1), 1)
    c_mean = (centroid * loud).sum(axis=1) / loud_n
    out[:, 3] = np.sqrt(((centroid - c_mean[:, None]) ** 2 * loud).sum(axis=1) / loud_n)
    # Sustained partials: the pattern of spectral peaks (each band against its neighbours, 80 Hz to
    # 2 kHz) a fifth of a second later; a held note keeps it, a gliding voice or a noise does not.
    low = np.flatnonzero((hz >= 80.0) & (hz <= 2000.0))
    lag = max(1, round(0.2 * fps))
    if low.size >= 5 and frames > lag:
        db = band_db[:, low]
        padded = np.pad(db, ((0, 0), (2, 2), (0, 0)), mode="edge")
        smooth = sum(padded[:, i : i + low.size] for i in range(5)) / 5.0
        contrast = db - smooth
        contrast = contrast - contrast.mean(axis=1, keepdims=True)
        a, b = contrast[:, :, :-lag], contrast[:, :, lag:]
        corr = (a * b).sum(axis=1) / np.maximum(np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1)), 1e-30)
        both = loud[:, :-lag] & loud[:, lag:]
        out[:, 4] = (corr * both).sum(axis=1) / np.maximum(both.sum(axis=1), 1)
    # How unevenly the spectrum changes: speech's flux comes in bursts at syllable onsets.
    both = loud[:, 1:] & loud[:, :-1]
    k = np.maximum(both.sum(axis=1), 1)
    m = (tv * both).sum(axis=1) / k
    out[:, 5] = np.sqrt(((tv - m[:, None]) ** 2 * both).sum(axis=1) / k) / np.maximum(m, 1e-6)
    return out


@dataclass
class SignalRules:
    """Thresholds of the signal rules (see :func:`segment_features`), one reason each.

    Attributes
    ----------
    silence_level
        Segments quieter than this (dB against a full-scale sine) are silence.
    steady_spread, steady_change
        A segment whose level spread and spectral change are both under these is steady: a tone
        where ``peak_share`` is above ``tone_peak_share``, else noise.
    tone_peak_share
        See ``steady_*``.
    noise_memory, noise_coherence
        A segment whose bands forget their energy from one window to the next (``memory``) and
        change independently of each other (``coherence``), both under these, is noise.
    clicks_quiet_share, clicks_burst
        A segment with more quiet frames than ``clicks_quiet_share`` whose loud frames drop by more
        than ``clicks_burst`` dB within three frames holds only clicks.
    """

    silence_level: float = -60.0
    steady_spread: float = 1.0
    steady_change: float = 0.05
    tone_peak_share: float = 0.5
    noise_memory: float = 0.0
    noise_coherence: float = 0.05
    clicks_quiet_share: float = 0.05
    clicks_burst: float = 10.0

    def reasons(self, features: np.ndarray) -> list[str | None]:
        """Each segment's reason (``silence``, ``tone``, ``noise``, ``clicks``), or ``None``."""
        out: list[str | None] = []
        for row in np.asarray(features, dtype=np.float64):
            f = dict(zip(FEATURES, row, strict=True))
            if f["quiet_share"] > self.clicks_quiet_share and f["burst"] > self.clicks_burst:
                out.append("clicks")  # before silence: quiet clicks are clicks all the same
            elif not f["level"] >= self.silence_level:  # NaN counts as silence, never as music
                out.append("silence")
            elif f["level_spread"] < self.steady_spread and f["change"] < self.steady_change:
                out.append("tone" if f["peak_share"] > self.tone_peak_share else "noise")
            elif f["memory"] < self.noise_memory and f["coherence"] < self.noise_coherence:
                out.append("noise")
            else:
                out.append(None)
        return out

    def to_dict(self) -> dict[str, float]:
        """The thresholds by name, as :meth:`MusicDensity.save` stores them."""
        return {k: float(v) for k, v in self.__dict__.items()}


def classifier_inputs(features: np.ndarray) -> np.ndarray:
    """The :class:`SegmentClassifier`'s inputs from :func:`segment_features`' columns: every
    measurement but the level (a quiet recording of music is still music, and what the classifier
    is fitted on says nothing about levels), the level spread on a log scale and the burst clipped
    (their tails are long: digital silence between words, isolated clicks)."""
    x = np.array(features, dtype=np.float64, ndmin=2)
    x[:, 1] = np.log1p(np.maximum(x[:, 1], 0.0))
    x[:, 6] = np.clip(x[:, 6], -20.0, 40.0)
    return x[:, 1:]


@dataclass
class SegmentClassifier:
    """A multinomial logistic regression on :func:`classifier_inputs`: music against speech, noise,
    tones and clicks, fitted on music (GTZAN excerpts, genrify's synthetic songs) and on synthetic
    non-music (generated signals, ``espeak-ng`` speech); see ``scripts/fit_musicness.py``.

    Attributes
    ----------
    classes
        The class names, ``"music"`` among them; the others are reasons (:data:`REASONS`).
    center, scale
        ``(d,)`` standardisation of the inputs.
    coef, intercept
        ``(len(classes), d)`` weights and ``(len(classes),)`` biases.
    threshold
        A segment whose probability of music is under this is not music (set so that a small share
        of held-out real music segments fall under it).
    """

    classes: tuple[str, ...]
    center: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    threshold: float

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities ``(n, len(classes))`` of segments' :func:`segment_features`."""
        z = (classifier_inputs(features) - self.center) / self.scale @ self.coef.T + self.intercept
        return softmax(z, axis=1)

    def reasons(self, features: np.ndarray) -> list[str | None]:
        """Each segment's likeliest non-music class where its probability of music is under the
        threshold (NaN counts as not music), else ``None``."""
        p = self.probabilities(features)
        music = self.classes.index("music")
        other = p.copy()
        other[:, music] = -1.0
        return [None if p[i, music] >= self.threshold else self.classes[int(np.argmax(other[i]))]
                for i in range(p.shape[0])]


@dataclass
class MusicDensity:
    """A Gaussian density of music's tagger embeddings, and the threshold under which a segment is
    unlike music.

    Attributes
    ----------
    mean
        ``(dim,)`` mean embedding.
    components
        ``(dim, k)`` principal directions kept (the density lives in their span).
    precision
        ``(k, k)`` inverse of the shrunk covariance of the projected embeddings.
    logdet
        Log determinant of that covariance.
    threshold
        Log densities (up to a constant: minus half the Mahalanobis distance squared and half the
        log determinant) under this are unlike music.
    rules
        The signal rules' thresholds (fitted with the density).
    classifier
        The segment classifier, judging what the rules leave (``None``: the rules alone).
    info
        What it was fitted on and how the threshold was set.
    """

    mean: np.ndarray
    components: np.ndarray
    precision: np.ndarray
    logdet: float
    threshold: float
    rules: SignalRules = field(default_factory=SignalRules)
    classifier: SegmentClassifier | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def score(self, embedding: np.ndarray) -> np.ndarray:
        """Log density (up to a constant shared by all inputs) of each embedding ``(n, dim)``."""
        z = (np.asarray(embedding, dtype=np.float64) - self.mean) @ self.components
        return -0.5 * (np.einsum("ij,jk,ik->i", z, self.precision, z) + self.logdet)

    def unlike(self, embedding: np.ndarray) -> np.ndarray:
        """Whether each embedding is unlike music (NaN counts as unlike)."""
        return ~(self.score(embedding) >= self.threshold)

    def save(self, path: str | Path) -> Path:
        """Write as safetensors (plain arrays; settings as JSON metadata)."""
        from safetensors.numpy import save_file

        from genrify.core.fsutil import atomic_path

        meta = {"format": DENSITY_FORMAT, "version": DENSITY_FORMAT_VERSION, "embedding": list(EMBEDDING),
                "logdet": self.logdet, "threshold": self.threshold, "rules": self.rules.to_dict(), "info": self.info}
        tensors = {k: np.ascontiguousarray(getattr(self, k), dtype=np.float32) for k in ("mean", "components", "precision")}
        if self.classifier is not None:
            c = self.classifier
            meta["classifier"] = {"classes": list(c.classes), "threshold": c.threshold}
            # float64: the threshold sits on these probabilities, so they are kept exactly as fitted.
            tensors.update({f"classifier.{k}": np.ascontiguousarray(getattr(c, k), dtype=np.float64)
                            for k in _CLASSIFIER_ARRAYS})
        path = Path(path)
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"genrify": json.dumps(meta)})
        return path

    @classmethod
    def load(cls, path: str | Path = DENSITY_PATH) -> MusicDensity:
        """Read a density written by :meth:`save`; every field is checked, no code is run.

        Raises
        ------
        ModelFileError
            Missing, unreadable or inconsistent.
        """
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise ModelFileError(f"{path}: the music check's density is missing; reinstall genrify")
        try:
            with safe_open(str(path), framework="numpy") as f:
                raw = (f.metadata() or {}).get("genrify")
                tensors = {k: f.get_tensor(k).astype(np.float64) for k in f.keys()}  # noqa: SIM118
            meta = json.loads(raw or "null")
            if not isinstance(meta, dict) or meta.get("format") != DENSITY_FORMAT:
                raise ValueError("not a music density")
            classifier = None
            if meta.get("classifier") is not None:
                classifier = SegmentClassifier(
                    classes=tuple(str(c) for c in meta["classifier"]["classes"]),
                    threshold=float(meta["classifier"]["threshold"]),
                    **{k: tensors[f"classifier.{k}"] for k in _CLASSIFIER_ARRAYS})
            density = cls(mean=tensors["mean"], components=tensors["components"], precision=tensors["precision"],
                          logdet=float(meta["logdet"]), threshold=float(meta["threshold"]),
                          rules=SignalRules(**{k: float(v) for k, v in meta["rules"].items()}),
                          classifier=classifier, info=dict(meta.get("info") or {}))
        except Exception as exc:  # noqa: BLE001 - safetensors, json and the constructor raise several types
            raise ModelFileError(f"{path}: not a readable music density ({type(exc).__name__}: {exc})") from None
        dim, k = density.components.shape if density.components.ndim == 2 else (0, 0)
        if (density.mean.shape != (dim,) or density.precision.shape != (k, k) or k == 0
                or not all(np.isfinite(t).all() for t in tensors.values())
                or not np.isfinite([density.logdet, density.threshold]).all()):
            raise ModelFileError(f"{path}: the music density's arrays are inconsistent")
        c = density.classifier
        d = len(FEATURES) - 1
        if c is not None and (c.center.shape != (d,) or c.scale.shape != (d,) or not (c.scale > 0).all()
                              or c.coef.shape != (len(c.classes), d) or c.intercept.shape != (len(c.classes),)
                              or "music" not in c.classes or not set(c.classes) <= set(REASONS) | {"music"}
                              or not np.isfinite(c.threshold)):
            raise ModelFileError(f"{path}: the music check's classifier is inconsistent")
        return density


_CLASSIFIER_ARRAYS = ("center", "scale", "coef", "intercept")


@lru_cache(maxsize=1)
def packaged() -> MusicDensity:
    """The packaged density and rules, read once per process."""
    return MusicDensity.load()


def song_verdict(reasons: Sequence[str | None], share: float = SONG_SHARE) -> str | None:
    """A song's reason from its segments' (``None`` for a music segment): the commonest reason
    where more than ``share`` of the segments are not music, else ``None``."""
    flagged = [r for r in reasons if r is not None]
    if not reasons or len(flagged) <= share * len(reasons):
        return None
    counts = Counter(flagged)
    return max(counts, key=lambda r: (counts[r], -REASONS.index(r)))


def judge_features(features: np.ndarray, density: MusicDensity | None = None) -> list[str | None]:
    """Each segment's reason for not being music from its :func:`segment_features`, or ``None``:
    the signal rules name the plain cases, and the classifier judges what they leave (speech,
    rumble, buzz)."""
    density = density or packaged()
    reasons = density.rules.reasons(features)
    if density.classifier is None:
        return reasons
    learned = density.classifier.reasons(features)
    return [r if r is not None else c for r, c in zip(reasons, learned, strict=True)]


def segment_reasons(segments: np.ndarray, params: FeatureParams, density: MusicDensity | None = None) -> list[str | None]:
    """Each segment's reason for not being music, or ``None`` where it may be music.

    Parameters
    ----------
    segments
        ``(n, n_mels, frames)`` log-mel segments in ``params``' scale.
    params
        Their feature parameters.
    density
        Default: the packaged one.
    """
    return judge_features(segment_features(segments, params), density)


def check_song(song: SongSegments, params: FeatureParams, *, density: MusicDensity | None = None) -> str | None:
    """Why a song is not music (one of :data:`REASONS` but ``unlike-music``, which only the
    benchmark's density gives), or ``None`` where it may be.

    Parameters
    ----------
    song
        The segments a model read.
    params
        Their feature parameters.
    density
        Default: the packaged one.
    """
    return song_verdict(segment_reasons(song.segments, params, density))
