"""Defaults that several modules and the command line share, in one place (no imports: the CLI reads
them at start-up)."""

#: Frames per segment of genrify's own models (about 3 s at the default features).
CHUNK_FRAMES = 128
#: Segments classified per song unless asked otherwise, spread evenly from its start to its end, as
#: the seed's ``test.py`` sampled them. With the built-in model, 8 segments give the same top genre
#: as every segment for at least 97 % of songs of 1 to 10 minutes, real and synthetic
#: (``benchmarks/sampling_agreement.py``); a song of up to 8 segments (about 24 s) is read whole.
DEFAULT_MAX_SEGMENTS = 8
