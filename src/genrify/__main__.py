"""``python -m genrify``: the same as the ``genrify`` command."""

from genrify.cli import main

if __name__ == "__main__":
    main()
