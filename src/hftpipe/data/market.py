"""One entry point for bar and trade files: sniff, load, validate with GE, write canonical Parquet.

Other callers (the partitioned dataset, the CLI) use :func:`load_market` (and `hftpipe.prepare.ingest_market`) and
never look at a vendor format.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hftpipe.data.bars import BarTable, load_bars
from hftpipe.data.ticks import TickTable, load_ticks, sniff_tick_format
from hftpipe.errors import DataFormatError

log = logging.getLogger(__name__)

# load_bars options that mean nothing for a trade file.
_BAR_ONLY = ("source_tz", "exchange_tz", "stamp", "ambiguous", "bar_size")


def is_tick_file(path: str | Path) -> bool:
    """Whether ``path`` holds trades (bitcoincharts, Mt.Gox, or a tick Parquet) rather than bars."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        if not path.exists():
            raise DataFormatError(f"{path} does not exist")
        return b"hftpipe_ticks" in (pq.read_schema(path).metadata or {})
    if not path.exists():
        raise DataFormatError(f"{path} does not exist")
    try:
        sniff_tick_format(path)
    except DataFormatError:
        return False
    return True


def load_market(path: str | Path, *, check: bool = True, **options: Any) -> BarTable | TickTable:
    """Load a bar file as a :class:`BarTable` or a trade file as a :class:`TickTable` (format sniffed)."""
    if is_tick_file(path):
        tick_options = {k: v for k, v in options.items() if k not in _BAR_ONLY and v is not None}
        return load_ticks(path, check=check, **tick_options)
    return load_bars(path, check=check, **{k: v for k, v in options.items() if v is not None})
