"""The basics every floor may use: the one atomic write (``fsutil``), running work on many files
(``runner``: a local process pool; ``distributed``: a Dask cluster) and the compute device (``devices``)."""
