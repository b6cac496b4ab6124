"""`python -m alexnet` (and so `torchrun -m alexnet train ...`)."""

import contextlib
import logging
import os
import sys

from alexnet.cli import main

if __name__ == "__main__":
    code = main()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # A torchrun worker, its work done and its files closed, leaves without the interpreter's finalization:
        # there, gloo's threads aborted the process now and then under load ("terminate called without an active
        # exception", SIGABRT, after the run had finished), and torchrun then failed the whole run.
        logging.shutdown()
        with contextlib.suppress(OSError):  # a reader that left (a closed pipe) must not keep the status from torchrun
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
    raise SystemExit(code)
