"""vx plugin ``python``: adds the Python implementation, version and platform to task keys,
so artifacts built by one interpreter are not restored for another."""
