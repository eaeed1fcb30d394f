"""Prometheus metrics of every dfs process: the HTTP endpoint, the per-RPC
interceptor, the collectors that read a server's own counters at scrape time,
and the FUSE operation timer. Hot paths only bump prometheus_client objects;
everything else is read when a scraper asks."""
