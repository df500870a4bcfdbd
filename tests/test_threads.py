"""threads.FairLock: the receivers' turn is handed over in order, never kept by the thread
that releases it while another waits."""
import threading
import time

import pytest

from openai_s2s.threads import FairLock
from engine_harness import wait_until


def _waiting(lock, count):
    return wait_until(lambda: len(lock._waiters) >= count, 2)


def test_a_waiter_gets_the_lock_before_the_thread_that_released_it_takes_it_again():
    lock, order = FairLock(), []
    lock.acquire()

    def other():
        lock.acquire()
        order.append("other")
        lock.release()
    waiter = threading.Thread(target=other)
    waiter.start()
    assert _waiting(lock, 1)
    lock.release()
    lock.acquire()        # at once, as a receiver does for its next message
    order.append("again")
    lock.release()
    waiter.join(5)
    assert order == ["other", "again"]


def test_waiters_are_served_in_the_order_they_came():
    lock, order = FairLock(), []
    lock.acquire()
    threads = []
    for name in range(5):
        t = threading.Thread(target=lambda name=name: (lock.acquire(), order.append(name), lock.release()))
        t.start()
        assert _waiting(lock, name + 1)
        threads.append(t)
    lock.release()
    for t in threads:
        t.join(5)
    assert order == [0, 1, 2, 3, 4] and not lock.locked()


def _busy(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_a_thread_that_takes_the_lock_in_a_loop_lets_the_other_in_between(kind=FairLock):
    """A receiver whose server floods it (each message 0.3 ms of Python, the GIL held), against
    one that has a single message to handle. With threading.Lock the flooded thread kept it for
    113 to 1173 rounds (35-363 ms) in five tries."""
    lock, stop, rounds = kind(), threading.Event(), []

    def flooded():
        while not stop.is_set():
            lock.acquire()
            rounds.append("flood")
            _busy(0.0003)
            lock.release()
    flood = threading.Thread(target=flooded)
    flood.start()
    assert wait_until(lambda: len(rounds) > 10, 2)
    started = len(rounds)
    lock.acquire()
    got_in_after = len(rounds) - started
    lock.release()
    stop.set()
    flood.join(5)
    assert got_in_after <= 2


def test_releasing_an_unheld_lock_is_an_error_and_changes_nothing():
    lock = FairLock()
    with pytest.raises(RuntimeError):
        lock.release()
    assert lock.acquire() and lock.locked()
    lock.release()
    assert not lock.locked()


def test_paused_no_one_new_gets_the_lock_and_the_holder_keeps_it_until_resume():
    """The unicast loop pauses the receivers' turn for its pass: the receiver handling a message
    finishes it, the next waits for the pass to end, and pause() itself never waits."""
    lock, order = FairLock(), []
    lock.acquire()                       # a receiver mid-message
    lock.pause()                         # the loop's pass begins: returns at once
    waiter = threading.Thread(target=lambda: (lock.acquire(), order.append("waiter"), lock.release()))
    waiter.start()
    assert _waiting(lock, 1)
    lock.release()                       # the message is done: nobody is handed the lock
    time.sleep(0.05)
    assert order == [] and not lock.locked()
    lock.resume()                        # the pass is over: the first waiter goes on
    waiter.join(5)
    assert order == ["waiter"] and not lock.locked()


def test_a_paused_free_lock_is_not_taken_until_resume():
    lock, order = FairLock(), []
    lock.pause()
    t = threading.Thread(target=lambda: (lock.acquire(), order.append("in"), lock.release()))
    t.start()
    assert _waiting(lock, 1)
    time.sleep(0.05)
    assert order == []
    lock.resume()
    t.join(5)
    assert order == ["in"] and not lock.locked()
    lock.resume()                        # resuming an unpaused lock changes nothing
    assert lock.acquire() and lock.locked()
    lock.release()


class _CountingLock:
    def __init__(self):
        self.pauses = self.resumes = 0

    def pause(self):
        self.pauses += 1

    def resume(self):
        self.resumes += 1


def test_capped_pause_stops_pausing_once_its_share_of_the_window_is_spent():
    from openai_s2s.threads import CappedPause
    lock = _CountingLock()
    cap = CappedPause(lock, share=0.5, window=1.0)
    t = 100.0
    for _ in range(3):                   # 0.2 s each: 0.6 s paused in the first second
        assert cap.begin(t)
        cap.end(t, t + 0.2)
        t += 0.21
    assert not cap.begin(t) and cap.skipped == 1      # 0.6 > 0.5 of the window: no pause
    assert (lock.pauses, lock.resumes) == (3, 3)      # every pause it made was resumed
    assert cap.begin(100.0 + 1.0)        # the next window pauses again
    cap.end(101.0, 101.01)
    assert (lock.pauses, lock.resumes) == (4, 4)


def test_a_loop_within_its_share_always_pauses():
    from openai_s2s.threads import CappedPause
    lock = _CountingLock()
    cap = CappedPause(lock, share=0.7)
    t = 0.0
    for _ in range(200):                 # 9 ms passes every 20 ms: 45 % of each second
        assert cap.begin(t)
        cap.end(t, t + 0.009)
        t += 0.02
    assert cap.skipped == 0 and lock.pauses == lock.resumes == 200
