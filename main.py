"""document-it entry point: `python main.py --help`."""

from document_it.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
