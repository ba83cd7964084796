"""A job's lease on the runner: heartbeats, log shipping and cancel, in one thread.

Owns what keeps a claimed job alive while the agent (`runners.agent`) runs it: a thread
that renews the lease every third of the lease the service granted (`granted_lease`),
reads `cancel_requested`, and ships the job's log lines (`LogShipper`, fed by the
`logging` handler and a tee of stdout/stderr). The lease comes first: a log batch is
retried for a third of the lease at most, then waits, under the same batch key, for the
next ship, so no line is lost nor stored twice. A lease the service says is lost stops
the job. It does not claim, run or finish jobs (`runners.agent` does).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from typing import TYPE_CHECKING, TextIO

from service.crud import LeaseError
from service.errors import EvalctlError
from service.models import JobPublic
from service.remote import ServiceUnavailableError

if TYPE_CHECKING:
    from runners.agent import Agent

log = logging.getLogger("evalctl.runner")


class LogShipper(logging.Handler):
    """Collects a job's log records and console lines; the lease thread ships them."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.lines: deque[str] = deque()

    def emit(self, record: logging.LogRecord) -> None:
        self.add(self.format(record))

    def add(self, text: str) -> None:
        """Queue lines of text (empty lines dropped)."""
        self.lines.extend(line for line in text.splitlines() if line.strip())

    def take(self, limit: int = 5000) -> list[str]:
        """Remove and return up to `limit` queued lines."""
        out: list[str] = []
        while self.lines and len(out) < limit:
            out.append(self.lines.popleft())
        return out


class Tee:
    """A text stream for the job's console: writes to stdout and to the shipper."""

    def __init__(self, stream: TextIO, shipper: LogShipper) -> None:
        self.stream, self.shipper = stream, shipper

    def write(self, text: str) -> int:
        self.shipper.add(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return False


class Lease:
    """A thread that keeps one job's lease alive, ships its logs and watches for cancel."""

    def __init__(self, agent: Agent, job: JobPublic, shipper: LogShipper) -> None:
        self.agent, self.job, self.shipper = agent, job, shipper
        self.stop = threading.Event()  # tells the job to stop (cancel or lease lost)
        self.cancelled = False
        self.lost = False
        self.run_id: int | None = job.run_id  # the run this job created or resumes
        #: Seconds between heartbeats, and the most a log batch is retried before it waits.
        self.every = granted_lease(job, agent.config.lease_seconds) / 3
        self._batch: tuple[str, list[str]] | None = None  # (key, lines) not yet stored
        self._shipping = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"lease-{job.id}", daemon=True)

    def __enter__(self) -> Lease:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        self.flush()

    def ship(self) -> bool:
        """Send one batch of queued log lines; return False if the service did not take it.

        A batch not taken within `every` seconds is kept and sent again, under the same
        batch key, by the next ship (the service stores a batch once, however often sent).
        """
        with self._shipping:
            if self.lost:
                return True
            if self._batch is None:
                lines = self.shipper.take()
                if not lines:
                    return True
                self._batch = (uuid.uuid4().hex, lines)
            key, lines = self._batch
            try:
                self.agent.jobs.append_logs(
                    job_id=self.job.id,
                    runner_id=self.agent.runner_id,
                    lines=lines,
                    batch_key=key,
                    retry_for=self.every,
                )
            except LeaseError:
                self._lose()
            except ServiceUnavailableError as exc:
                n, job_id = len(lines), self.job.id
                log.warning("could not ship %d log lines of job %s yet: %s", n, job_id, exc)
                return False
            except (EvalctlError, ValueError) as exc:  # refused: sending it again cannot help
                n, job_id = len(lines), self.job.id
                log.error("the service refused %d log lines of job %s: %s", n, job_id, exc)
            self._batch = None
            return True

    def flush(self) -> None:
        """Ship every queued line, until none is left or the service does not take one."""
        while (self._batch is not None or self.shipper.lines) and self.ship():
            pass

    def beat(self) -> None:
        """Renew the lease; a cancel request or a lost lease sets `stop`."""
        cfg = self.agent.config
        try:
            job = self.agent.jobs.heartbeat(
                job_id=self.job.id, runner_id=self.agent.runner_id, lease_seconds=cfg.lease_seconds
            )
        except LeaseError as exc:
            log.error("lost the lease on job %s: %s", self.job.id, exc)
            self._lose()
            return
        except EvalctlError as exc:  # the service is away; the lease may survive it
            log.warning("heartbeat for job %s failed: %s", self.job.id, exc)
            return
        if job.cancel_requested and not self.cancelled:
            log.info("job %s: cancel requested; stopping", self.job.id)
            self.cancelled = True
            self.stop.set()

    def _lose(self) -> None:
        self.lost = True
        self.stop.set()

    def _loop(self) -> None:
        every = self.every
        next_beat = time.monotonic() + every
        while not self._done.wait(min(1.0, every)):
            # The lease before the logs: a failing batch (retried for `every` s at most)
            # then delays a heartbeat by a third of the lease, never past its end.
            if time.monotonic() >= next_beat and not self.lost:
                self.beat()
                next_beat = time.monotonic() + every
            self.ship()


def granted_lease(job: JobPublic, asked: float) -> float:
    """Return the lease the service granted on a claim: `asked`, or less if it capped it."""
    if job.lease_expires_at is None or job.started_at is None:
        return asked
    # Both times come from the service's clock: this machine's clock skew does not matter.
    granted = (job.lease_expires_at - job.started_at).total_seconds()
    return min(asked, granted) if granted > 0 else asked
