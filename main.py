"""document-it entry point: `python main.py --help`."""

from document_it.cli import run_command

if __name__ == "__main__":
    run_command()
