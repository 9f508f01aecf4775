"""Learning: splits, data, training and evaluation of genrify's networks, and learning a library's
own genres from tagger embeddings (``labels``, ``embedcache``, ``learner``, ``learning``, ``suggest``)."""
