"""Market-data feeds: replay of ingested files and live exchange adapters (Bitstamp L3, its local simulator)."""
