"""Ingest jobs under a lease: a live owner (renewing) keeps its job, a gone one loses it to exactly one
recovering process, and an outcome a full disk refused is kept and written once there is space."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from aifab.corpus.jobs import Jobs
from aifab.corpus.uploads import save_upload
from aifab.errors import Conflict
from aifab.testing import DiskFull


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2020, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def on(host: str, db, clock: Clock) -> Jobs:
    jobs = Jobs(db, lease_s=60, clock=clock)
    jobs.host = host
    return jobs


def test_a_renewed_lease_keeps_the_job_and_an_expired_one_loses_it_once(make_corpus):
    db = make_corpus().registry.db
    clock = Clock()
    owner, b, c = on("node-a", db, clock), on("node-b", db, clock), on("node-c", db, clock)
    job = owner.start("kb")
    with pytest.raises(Conflict, match="already running"):
        b.start("kb")
    clock.advance(50)
    owner.renew()  # the keeper thread does this every lease_s / 3
    clock.advance(50)  # 100 s after the start, 50 s after the renewal
    assert b.recover() == []
    clock.advance(20)  # the renewed lease ran out
    claimed = b.recover()
    assert [r.id for r in claimed] == [job] and c.recover() == []  # one process wins it
    assert owner.get(job)["status"] == "interrupted"
    assert b.start("kb")  # the collection is free again


def test_a_dead_pid_on_this_host_loses_its_job_at_once(make_corpus):
    db = make_corpus().registry.db
    clock = Clock()
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = Jobs(db, clock=clock)
    dead.pid = int(proc.stdout)  # a process of this host that has exited
    job = dead.start("kb")
    again = Jobs(db, clock=clock)  # same host, lease still valid: the pid decides
    assert [r.id for r in again.recover()] == [job]


def test_an_outcome_refused_by_a_full_disk_waits_and_the_lock_is_released(make_corpus):
    db = make_corpus().registry.db
    jobs = Jobs(db)
    job = jobs.start("kb")
    with DiskFull(db, files=False) as disk:
        disk.fill()
        jobs.finish(job, "failed", {"error": "out of disk space"})  # not raised: the caller's error goes on up
        assert jobs.get(job)["status"] == "failed"
        assert Jobs(db).get(job)["status"] == "running"  # not in the database yet
        disk.free()
        assert jobs.start("kb") != job  # no "already running": the outcome is written first
    assert Jobs(db).get(job)["status"] == "failed"


def test_recovery_without_a_worker_removes_uploads_never_ingested(make_corpus):
    corpus = make_corpus()
    gone = on("node-gone", corpus.registry.db, Clock())
    job = gone.queue("kb", request={"kind": "upload", "files": ["a.md"], "acl": [], "errors": []})
    src = save_upload(corpus.uploads_dir, "kb", "a.md", b"# A\n\nText.\n")
    (done,) = corpus.recover()  # a lease taken in 2020 ran out long ago
    assert done["id"] == job and done["recovery"] == {"action": "cleaned_up", "removed_uploads": ["a.md"]}
    assert not src.path.exists() and corpus.jobs.get(job)["recovery"]["action"] == "cleaned_up"
