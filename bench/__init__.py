"""Benchmarks of runnerctl against supervisord, circus and a fork-and-wait floor."""
