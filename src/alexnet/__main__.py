"""`python -m alexnet` (and so `torchrun -m alexnet train ...`)."""

from alexnet.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
