"""The rules every file genrify is told to write by name is held to, written once.

``classify -o`` (results) and ``train --out`` / ``learn --out`` (a model, through
:func:`genrify.models.modelfile.check_destination`) check their destination with
:func:`check_output_file` before any work: never a folder, never an input (compared by device and
inode, so a symbolic or hard link to one is caught too), never an existing audio file, and only
in a folder that can be written. What only one kind of file needs (a model replaces only a model;
results never replace the results cache) is checked beside it by its caller.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from genrify.audio.decode import is_audio_file
from genrify.collection.library import display_path, file_identity
from genrify.errors import GenrifyIOError, UsageError


def check_output_file(
    path: str | Path,
    *,
    inputs: Iterable[str | Path] = (),
    what: str = "the output file",
    example: str = "results.json",
    audio_names: bool = False,
    follow_link: bool = False,
    make_folders: bool = False,
) -> Path:
    """Refuse a file name whose writing would replace an input or audio, or that cannot be written.

    Parameters
    ----------
    path
        The name given (the messages show it).
    inputs
        Files the command reads: none may be written over.
    what
        The file, for the messages (``"the model file"``).
    example
        A file name to suggest where ``path`` is a folder.
    audio_names
        Refuse an audio file's name even where no such file exists: a file named like a song
        would later be taken for one.
    follow_link
        Where ``path`` is a symbolic link, the file it points to is written (and checked), not
        the link; otherwise the writer replaces the link itself.
    make_folders
        The writer makes missing folders: the nearest existing one must be writable.

    Returns
    -------
    Path
        The file that will be written: ``path``, or with ``follow_link`` the file it points to.

    Raises
    ------
    UsageError
        ``path`` is a folder, an input, or audio (the message names it; the CLI exits 2).
    GenrifyIOError
        Its folder cannot be written (exit 1: the name was fine, the file system says no).
    """
    given = Path(path)
    shown = display_path(given)
    target = Path(os.path.realpath(given)) if follow_link and given.is_symlink() else given
    if target.is_dir():
        # A mistyped option, like any other: the user meant a file in that folder.
        raise UsageError(f"{shown}: is a folder; give {what}'s name (e.g. {shown}/{example})")
    parent = target.parent
    while make_folders and not os.path.lexists(parent) and parent != parent.parent:
        parent = parent.parent
    if not (parent.is_dir() and os.access(parent, os.W_OK | os.X_OK)):
        raise GenrifyIOError(f"{shown}: cannot write {what} there ({display_path(parent)} is not a writable folder)")
    identity = file_identity(target)
    if identity is not None and identity in {file_identity(i) for i in inputs}:
        raise UsageError(f"{shown}: is one of the input files; choose another name")
    exists = os.path.lexists(target)
    if (exists and is_audio_file(target.name)) or (
            audio_names and (is_audio_file(target.name) or is_audio_file(given.name))):
        kind = "an existing audio file" if exists else "an audio file's name"
        raise UsageError(f"{shown}: {kind}; genrify never writes {what} there, choose another name")
    return target
