"""The feature store: log-mel arrays and their manifest (``store``), filled by ``extract``."""
