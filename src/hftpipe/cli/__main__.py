"""``python -m hftpipe.cli``: the same as the ``hftpipe`` console script."""

from hftpipe.cli import main

main()
