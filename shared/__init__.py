"""Code every Vigil service shares: configuration, message contracts, messaging and database plumbing."""
