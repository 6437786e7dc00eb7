"""Benchmark of the upload service against a guide-like baseline and an echo ceiling."""
