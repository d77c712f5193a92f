"""Claim exclusivity at the protocol level: racing claimers, one rename each (T4b, R2)."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from collections import Counter
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from agentq.queue import protocol as q
from agentq.queue.vetting import NameKind, classify_name

pytestmark = pytest.mark.integration

CLAIMERS = 8
TASKS = 2000
ROUNDS = 3


def _claimer(project_path: str, ledger: str, start: Barrier) -> None:
    """Claim whatever is pending until nothing is; one ledger line per successful claim.

    Like a daemon it lists the inbox and tries each pending name; a claim it wins is
    read (the content it would execute) and dropped at once, as a fast completion.
    The lock that keeps a second daemon off a project is bypassed on purpose.
    """
    project = q.Project(Path(project_path))
    start.wait(60)  # every claimer is up (imports done) before any claims
    with open(ledger, "a", encoding="utf-8") as out:
        while True:
            pending = [n for n in os.listdir(project.inbox) if classify_name(n) is NameKind.PENDING]
            if not pending:
                return
            for name in pending:
                claim = project.claim(name)
                if claim is None:
                    continue
                digest = hashlib.sha256(project.read_claimed(claim)).hexdigest()
                out.write(json.dumps({"name": name, "sha": digest, "pid": os.getpid()}) + "\n")
                out.flush()
                project.drop(claim)


def _race(folder: Path) -> tuple[dict[str, str], list[dict[str, str]], list[str]]:
    """One race: 2,000 files, 8 claimers. Returns the files' digests, the claims, the leftovers."""
    project = q.Project(folder)
    project.path.mkdir()
    project.ensure_dirs()
    expected = {}
    for i in range(TASKS):
        # Bodies of some KiB: a copy takes long enough for racers to meet inside it.
        body = f"---\ntitle: task {i}\n---\n{'payload ' * (512 + i % 512)}{i}\n".encode()
        tmp = project.tmp / f"t{i:04d}.md"
        tmp.write_bytes(body)
        tmp.rename(project.inbox / tmp.name)
        expected[tmp.name] = hashlib.sha256(body).hexdigest()
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(CLAIMERS)
    ledgers = [folder / f"claims-{n}.jsonl" for n in range(CLAIMERS)]
    workers = [
        context.Process(target=_claimer, args=(str(project.path), str(ledger), start))
        for ledger in ledgers
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [w.exitcode for w in workers] == [0] * CLAIMERS
    claims = [json.loads(line) for ledger in ledgers for line in ledger.read_text().splitlines()]
    return expected, claims, sorted(os.listdir(project.inbox))


@pytest.mark.slow
def test_racing_claimers_claim_every_file_exactly_once_with_its_content(tmp_path: Path) -> None:
    """8 processes race for 2,000 inbox files: 2,000 claims, none twice, each byte-exact.

    A race is short and the machine may be busy, so it is run ``ROUNDS`` times.
    """
    for number in range(ROUNDS):
        expected, claims, left = _race(tmp_path / f"round-{number}")
        per_name = Counter(c["name"] for c in claims)
        assert sorted(per_name) == sorted(expected), "a file was never claimed"
        assert [n for n, k in per_name.items() if k > 1] == [], "a file was claimed twice"
        torn = [c["name"] for c in claims if c["sha"] != expected[c["name"]]]
        assert torn == [], "a claimer read other bytes than the producer wrote"
        assert left == [], "a claimed file was left behind"
        assert len({c["pid"] for c in claims}) > 1, "no race: one claimer took everything"
