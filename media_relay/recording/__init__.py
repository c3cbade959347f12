"""Recording: encoded frames remuxed into Matroska segments, chained by SHA-256 in a manifest."""
