"""runnerctl keeps a declared pool of self-hosted GitHub Actions runners registered and online."""

__version__ = "0.1.0"
