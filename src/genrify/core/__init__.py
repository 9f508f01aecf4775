"""The basics every floor may use: the one atomic write (``fsutil``), running work on many files
(``runner``: a local process pool; ``distributed``: a Dask cluster), the compute device
(``devices``), the pip command for an optional extra (``extras``) and numpy's missing softmax
(``numeric``)."""
