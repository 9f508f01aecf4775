"""Classification: a model on songs (``predict``, with the music check ``musicness``), the service
over a library (``service``: model reference, runs, cache, tags, organize), albums (``albums``), the
results cache (``results``) and output files (``outputs``)."""
