"""``python -m thoughtscope``: the command line, also as ``torchrun -m thoughtscope``."""

from thoughtscope.cli import main

if __name__ == "__main__":
    main()
