"""`python -m pipeline` runs the `ardary-pipeline` command."""

from pipeline.cli import main

if __name__ == "__main__":
    main()
