"""`python -m pedipacs` runs the command line."""

from pedipacs.cli import app

if __name__ == "__main__":
    app()
