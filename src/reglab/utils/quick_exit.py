"""An interpreter that exits without collecting every object it made.

At exit Python clears every module and runs its cyclic garbage collector over what is left.
With torch imported that is ~170,000 objects, and the collections took 1.0–1.7 s of every
``reglab`` command's exit on this project's 2-core machines (``import torch`` and nothing
else: 0.9–1.5 s from the last ``atexit`` handler to the process's end; 0.3 s with the
objects frozen). :func:`freeze_at_exit` registers :func:`gc.freeze` as an ``atexit``
handler: the objects then alive move to the collector's permanent generation, which the
exit's collections skip. Everything else about the exit is as before (the other ``atexit``
handlers run, modules are cleared, objects without cycles are freed as their last
reference goes); what it skips is finalizing objects held in reference cycles, which
Python does not promise at exit either. reglab closes its files, stores and clusters
itself before the end. For processes reglab owns only (its command line, the workers of a
local cluster it starts): never set from library code a user imports.
"""

from __future__ import annotations

import atexit
import gc

_registered = False


def freeze_at_exit() -> None:
    """Registers :func:`gc.freeze` to run at this process's exit (once)."""
    global _registered
    if not _registered:
        atexit.register(gc.freeze)
        _registered = True
