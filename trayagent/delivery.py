"""Delivery of committed events to the agent's consumers, each at its own pace.

A consumer is a Notifier (`notify(events)` returns once it has taken them and raises if it
cannot). Each one is handed the outbox event by event, in `seq` order, and its progress is
written to the store as it takes each one, so:

- an event a consumer could not take (the reader of `--json` went away) stays in the outbox
  and is offered again later, or to the next run;
- one consumer failing never repeats an event to another: progress is per consumer;
- a `kill -9` repeats at most the one event a consumer was given before its progress was
  written;
- a slow or blocked consumer (a pipe nobody reads) holds up only its own thread, never the
  polls, the other consumers or shutdown.

An event leaves the outbox once every consumer of this run has taken it. With no consumer
at all (`trayagent clear` with no agent running) nothing is taken and everything is kept.
Connection and sync events are transient: offered once, in order, and not kept.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Iterable

from trayagent.core.model import Event
from trayagent.core.notifier import Notifier
from trayagent.errors import StoreError
from trayagent.store import Store

log = logging.getLogger(__name__)

#: How often a consumer that failed is offered its events again.
RETRY_SECONDS = 2.0
#: Events read from the outbox at a time.
BATCH = 256


@dataclass(eq=False)
class Consumer:
    """One notifier and its progress (the last `seq` it took) through the outbox."""

    _delivery: Delivery
    name: str
    notifier: Notifier
    progress: int
    _failing: bool = False
    _transient: deque[Event] = field(default_factory=deque)
    _wake: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _busy: threading.Lock = field(default_factory=threading.Lock)  # one drain at a time, thread or caller

    def __post_init__(self) -> None:
        self._saved = self.progress  # the progress the store holds

    # ------------------------------------------------------------ driving

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"deliver-{self.name}", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def join(self, timeout: float) -> bool:
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def offer(self, events: Iterable[Event]) -> None:
        self._transient.extend(events)

    def _run(self) -> None:
        stopping = self._delivery.stopping
        while True:
            self._wake.wait(RETRY_SECONDS if self._failing or self._saved < self.progress else None)
            self._wake.clear()
            try:
                self.drain()
            except Exception:  # noqa: BLE001 - this thread must outlive any surprise
                log.exception("delivery to %s failed", self.name)
            if stopping.is_set():
                return

    # ------------------------------------------------------------ the work

    def drain(self) -> None:
        """Hand over everything pending, oldest first; stop at the first event not taken."""
        with self._busy:
            if self._saved < self.progress and not self._save():
                return
            while True:
                try:
                    batch = self._delivery.store.pending_events(after=self.progress, limit=BATCH)
                except StoreError as exc:
                    self._trouble(f"cannot read its events: {exc}")
                    return
                for ev in batch:
                    if not self._give(ev):
                        return
                    self.progress = ev.seq or self.progress
                    if not self._save():
                        return
                if len(batch) < BATCH:
                    break
            self._give_transient()
            if self._failing:
                self._failing = False
                log.warning("%s takes events again", self.name)

    def _give(self, ev: Event) -> bool:
        try:
            self.notifier.notify([ev])
        except Exception as exc:  # noqa: BLE001 - a broken sink never stops the agent
            self._trouble(f"could not take event {ev.seq} ({type(exc).__name__}: {exc}); "
                          "it is kept and offered again")
            return False
        return True

    def _save(self) -> bool:
        try:
            self._delivery.record(self, self.progress)
        except StoreError as exc:
            self._trouble(f"took event {self.progress}, but that could not be recorded: {exc}")
            return False
        self._saved = self.progress
        return True

    def _give_transient(self) -> None:
        while self._transient:
            ev = self._transient.popleft()
            try:
                self.notifier.notify([ev])
            except Exception as exc:  # noqa: BLE001 - transient events are offered once
                log.debug("%s could not take a %s event: %s", self.name, ev.event.value, exc)

    def _trouble(self, what: str) -> None:
        if not self._failing:
            self._failing = True
            log.warning("%s %s", self.name, what)
        else:
            log.debug("%s %s", self.name, what)


class Delivery:
    """The consumers of one agent and their threads."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.stopping = threading.Event()
        self._consumers: list[Consumer] = []
        self._known: dict[str, int] | None = None
        self._running = False

    @property
    def consumers(self) -> list[Consumer]:
        return list(self._consumers)

    def add(self, notifier: Notifier, name: str | None = None) -> Consumer:
        """Register a consumer; its progress is kept under `name` (default: its class name)."""
        base = name or type(notifier).__name__
        taken = {c.name for c in self._consumers}
        unique, n = base, 1
        while unique in taken:
            n += 1
            unique = f"{base}#{n}"
        if self._known is None:
            self._known = self.store.consumer_progress()
        consumer = Consumer(self, unique, notifier, self._known.get(unique, 0))
        self._consumers.append(consumer)
        if self._running:
            consumer.start()
            consumer.wake()
        return consumer

    def start(self) -> None:
        """A thread per consumer from now on; each starts with what earlier runs left."""
        self._running = True
        for c in self._consumers:
            c.start()
            c.wake()

    def committed(self) -> None:
        """New events are in the outbox: hand them over (at once, when not started)."""
        for c in self._consumers:
            if self._running:
                c.wake()
            else:
                c.drain()

    def transient(self, events: list[Event]) -> None:
        """Offer events that are not kept (connection, sync) to every consumer, in order."""
        for c in self._consumers:
            c.offer(events)
            if self._running:
                c.wake()
            else:
                c.drain()

    def record(self, consumer: Consumer, seq: int) -> None:
        """Write a consumer's progress; forget what every consumer has taken."""
        floor = min(seq if c is consumer else c.progress for c in self._consumers)
        self.store.ack_consumer(consumer.name, seq, floor)

    def stop(self, timeout: float = 3.0) -> None:
        """Let each consumer finish what is pending, then close it; a blocked one is left behind.

        A consumer still blocked after `timeout` (a pipe nobody reads) keeps its events in the
        outbox for the next run; the agent does not wait for it.
        """
        self.stopping.set()
        for c in self._consumers:
            c.wake()
        deadline = time.monotonic() + timeout
        for c in self._consumers:
            if not c.join(max(deadline - time.monotonic(), 0.0)):
                log.warning("%s did not take its events in time; they are kept for the next start", c.name)
                continue
            try:
                c.notifier.close()
            except Exception:  # noqa: BLE001 - a notifier never stops shutdown
                log.exception("notifier %s failed to close", c.name)
        self._running = False


class LogConsumer:
    """The consumer of a running agent that has no other sink: the agent's log.

    Every event is logged as it is recorded (Agent._recorded), so taking it here is a no-op.
    Only a running agent has it: `trayagent clear` with no agent running has no consumer
    and leaves its events in the outbox for the agent's next start.
    """

    def notify(self, events: Iterable[Event]) -> None:
        pass

    def close(self) -> None:
        pass
