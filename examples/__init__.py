"""Runnable examples of document-it's public building blocks (`python -m examples.<name> --help`)."""
