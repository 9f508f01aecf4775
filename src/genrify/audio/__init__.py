"""Sound: decoding files (``decode``), log-mel features (``features``, computed by ``transforms``),
where segments lie and which are read (``segments``), and synthetic songs (``synth``)."""
