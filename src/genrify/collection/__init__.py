"""The user's music collection: finding its files (``library``), their genre tags (``tags``, by the
rules of ``tagpolicy``, spelled by ``genremap``), sorting them into folders and playlists
(``organize``), and where genrify may write (``destinations``)."""
