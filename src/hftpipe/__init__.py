"""hftpipe: from raw limit-order-book events to a served, honestly evaluated trading signal."""

__version__ = "0.1.0"
