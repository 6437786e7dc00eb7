"""The other two servers the benchmark runs beside ours: the guides' baseline and an echo ceiling."""
