"""Market data: the providers, the data source a scan reads, and the price cache in Redis."""
