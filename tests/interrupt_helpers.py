"""Ctrl-C as torch's checkpoint writer delivers it: the KeyboardInterrupt of a SIGINT that
lands in C++ code comes out as another exception ('RuntimeError: [enforce fail at
inline_container.cc] ... unexpected pos')."""

from __future__ import annotations

import os
import signal
import time


def interrupt_turned_into(error_type):
    """Ctrl-C raised where C++ code catches it and raises ``error_type`` instead."""
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)  # the handler raises in the sleep
        raise AssertionError("the SIGINT did not arrive")
    except KeyboardInterrupt:
        raise error_type("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0") \
            from None
