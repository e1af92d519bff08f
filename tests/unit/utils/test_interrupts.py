"""reglab.utils.interrupts: a SIGINT noted while a study runs stays Ctrl-C, even when the
code it lands in turns the KeyboardInterrupt into another exception (torch's checkpoint
writer does: 'RuntimeError: [enforce fail at inline_container.cc] ... unexpected pos')."""

from __future__ import annotations

import signal
import threading

import pytest

from interrupt_helpers import interrupt_turned_into
from reglab.utils import interrupts


def test_a_noted_interrupt_is_raised_again_from_what_it_became():
    with interrupts.noted():
        with pytest.raises(RuntimeError) as caught:
            interrupt_turned_into(RuntimeError)
        with pytest.raises(KeyboardInterrupt) as again:
            interrupts.reraise_if_interrupted(caught.value)
        assert again.value.__cause__ is caught.value
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back
    interrupts.reraise_if_interrupted(RuntimeError("after the block: not noted"))


def test_without_an_interrupt_an_error_is_left_to_its_handler():
    with interrupts.noted():
        interrupts.reraise_if_interrupted(RuntimeError("a run that fails"))  # no raise


def test_another_handler_or_thread_is_left_alone():
    seen = []
    previous = signal.signal(signal.SIGINT, lambda *_: seen.append(1))
    try:
        with interrupts.noted():
            assert signal.getsignal(signal.SIGINT) is not interrupts._note_and_raise
        errors = []

        def in_a_thread():
            try:
                with interrupts.noted():
                    pass
            except Exception as error:  # signal.signal outside the main thread raises
                errors.append(error)

        thread = threading.Thread(target=in_a_thread)
        thread.start()
        thread.join()
        assert errors == []
    finally:
        signal.signal(signal.SIGINT, previous)
