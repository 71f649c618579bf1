"""Remote execution: the asyncssh client and the dispatch of shards to hosts."""
