"""Market-data feeds: each publishes canonical book updates to ``md.<venue>.<symbol>`` with a per-symbol seq.

``replay`` plays back any file ``hftpipe ingest`` accepts (or its canonical Parquet) at a chosen speed; live
exchange adapters live beside it.
"""

from hftpipe.feeds.replay import FeedPublisher, ReplayData, load_replay, replay

__all__ = ["FeedPublisher", "ReplayData", "load_replay", "replay"]
