"""Defaults that several modules and the command line share, in one place (no imports: the CLI reads
them at start-up).

The objects that use them take them from here (:class:`genrify.audio.features.FeatureParams`'s fields,
:class:`genrify.learn.config.TrainConfig`, :data:`genrify.audio.decode.DEFAULT_SAMPLE_RATE`), and the CLI's help
texts are formatted from them, so a default is changed in one line.
"""

#: Sample rate genrify decodes and synthesises at, in Hz.
SAMPLE_RATE = 22050
#: Mel bands of genrify's log-mel features.
N_MELS = 128
#: FFT size of the features' STFT, in samples.
N_FFT = 2048
#: Hop between feature frames, in samples (about 23 ms at 22050 Hz).
HOP_LENGTH = 512
#: Frames per segment of genrify's own models (about 3 s at the default features).
CHUNK_FRAMES = 128
#: Segments classified per song unless asked otherwise, spread evenly from its start to its end, as
#: the seed's ``test.py`` sampled them. With the built-in model, 8 segments give the same top genre
#: as every segment for at least 97 % of songs of 1 to 10 minutes, real and synthetic
#: (``benchmarks/sampling_agreement.py``); a song of up to 8 segments (about 24 s) is read whole.
DEFAULT_MAX_SEGMENTS = 8
#: ``genrify learn`` (and ``beet genrify-learn``) leave out a genre with fewer songs than this.
DEFAULT_MIN_SONGS = 5
#: Longest audio genrify decodes from one file unless told otherwise (``--max-duration``), in
#: seconds. Past it a file is refused, each with one line, before it is decoded where its header says
#: its length, and as soon as decoding passes the limit where it does not. A tiny file can declare
#: days of audio (a flac of silence compresses over 1000 to 1): without a limit, extracting or drawing
#: it costs gigabytes. Six hours covers the longest single-file music there is (a DJ set, a radio
#: show, a whole opera of 4-5 h) and costs extraction at most about 500 MB (its 240 MB of float16
#: features and their copy) and half a minute of one core.
MAX_DURATION = 6 * 3600.0
#: The trainable architectures, by registry name, each with one line for help texts. The registry
#: (:func:`genrify.models.architectures`) imports torch, which the CLI must not do at start-up;
#: ``tests/test_layout.py`` checks that these names are the registry's.
ARCHITECTURES = {
    "seed-cnn": "the CNN of the student project genrify grew from",
    "short-res": "2D residual CNN",
    "timbre-temporal": "musicnn-style",
    "musicnn-transfer": "a head on pretrained musicnn embeddings: good with few songs",
}
#: The architecture ``genrify train`` uses unless told otherwise.
DEFAULT_ARCH = "seed-cnn"
