"""The janitor's decisions, on data: keep ages, monthly archives, leftovers, sweeps, limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agentq.config.models import JanitorConfig
from agentq.queue.janitor import plan as p
from agentq.queue.janitor.plan import (
    ArchiveFiles,
    ArchiveIndex,
    Delete,
    Entry,
    EntryKind,
    Limits,
    Listing,
    Member,
    ProjectListing,
    PruneWorktree,
    Reason,
    RemoveArchived,
)

NOW = datetime(2026, 12, 15, 12, 0, tzinfo=UTC)
DAY = 86400.0
PROJ = Path("/p")
QUEUE = PROJ / ".agent-queue"
ARCH = QUEUE / "archive"
CONFIG = JanitorConfig()  # keep_done 30d, keep_failed 90d, archive: true


def entry(
    path: str,
    age: float,
    *,
    kind: EntryKind = EntryKind.FILE,
    size: int = 10,
    sha: str | None = None,
    ctime_age: float | None = None,
) -> Entry:
    """An entry whose mtime is ``age`` seconds before NOW."""
    now_ns = p.to_ns(NOW)
    mtime = now_ns - int(age * 1e9)
    ctime = mtime if ctime_age is None else now_ns - int(ctime_age * 1e9)
    return Entry(QUEUE / path, kind, size, mtime, ctime, ino=hash(path) & 0xFFFF, sha256=sha)


def project(**fields: object) -> ProjectListing:
    """A project listing under /p with the given folders."""
    return ProjectListing(path=PROJ, archive_dir=ARCH, **fields)  # type: ignore[arg-type]


def decide(*projects: ProjectListing, config: JanitorConfig = CONFIG, **kw: object) -> p.Plan:
    """Plan a pass at NOW."""
    return p.plan(Listing(tuple(projects)), NOW, config, **kw)  # type: ignore[arg-type]


def archived(plan: p.Plan) -> dict[str, list[str]]:
    """Archive file name → the names of the files planned into it."""
    return {
        a.archive.name: [e.name for e in a.files]
        for a in plan.actions
        if isinstance(a, ArchiveFiles)
    }


# -- keep ages ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("folder", "age", "goes"),
    [
        ("done", 30 * DAY - 1, False),
        ("done", 30 * DAY, False),
        ("done", 30 * DAY + 0.001, True),
        ("failed", 40 * DAY, False),
        ("failed", 90 * DAY, False),
        ("failed", 90 * DAY + 1, True),
    ],
    ids=[
        "a done file a second younger than keep_done stays",
        "a done file exactly keep_done old stays",
        "a done file a millisecond older than keep_done goes",
        "a failed file past keep_done but not keep_failed stays",
        "a failed file exactly keep_failed old stays",
        "a failed file older than keep_failed goes",
    ],
)
def test_a_result_goes_only_once_older_than_its_folders_keep_age(
    folder: str, age: float, goes: bool
) -> None:
    """keep_done rules done/, keep_failed rules failed/, and the boundary itself is kept."""
    listing = project(**{folder: (entry(f"{folder}/x.md", age),)})
    plan = decide(listing)
    assert bool(plan.actions) is goes
    if goes:
        (action,) = plan.actions
        assert isinstance(action, ArchiveFiles) and action.archive.parent == ARCH


def test_archive_false_deletes_instead_with_the_folders_reason() -> None:
    """With ``archive: false`` old results are deleted, nothing is archived."""
    listing = project(
        done=(entry("done/a.md", 31 * DAY),), failed=(entry("failed/b.md", 91 * DAY),)
    )
    plan = decide(listing, config=JanitorConfig(archive=False))
    assert [(type(a), a.entry.name, a.reason) for a in plan.actions] == [  # type: ignore[union-attr]
        (Delete, "b.md", Reason.FAILED_EXPIRED),
        (Delete, "a.md", Reason.DONE_EXPIRED),
    ]
    assert p.archives_to_read(listing, NOW, JanitorConfig(archive=False)) == []


# -- archives ----------------------------------------------------------------------------


def test_files_go_into_the_archive_of_their_folder_and_utc_month() -> None:
    """Each (folder, month) is one archive, named ``done-2026-10.tar.gz``; oldest files first."""
    nov_1 = (NOW - datetime(2026, 11, 1, 0, 0, 30, tzinfo=UTC)).total_seconds()
    oct_31 = (NOW - datetime(2026, 10, 31, 23, 59, 30, tzinfo=UTC)).total_seconds()
    listing = project(
        done=(entry("done/nov.md", nov_1), entry("done/oct.md", oct_31)),
        failed=(entry("failed/old.md", 200 * DAY),),
    )
    assert archived(decide(listing)) == {
        "failed-2026-05.tar.gz": ["old.md"],
        "done-2026-10.tar.gz": ["oct.md"],
        "done-2026-11.tar.gz": ["nov.md"],
    }


def test_an_archive_grows_until_it_is_full_then_the_month_goes_on_in_the_next_number() -> None:
    """Below the cap the newest archive is extended; at the cap a new number starts."""
    month = p.month_of(entry("done/x.md", 40 * DAY).mtime_ns)
    small = ArchiveIndex((Member("a.md", "a.md", 100, "aa"),))
    full = ArchiveIndex((Member("a.md", "a.md", p.ARCHIVE_CAP_BYTES, "aa"),))
    names = (f"done-{month}.tar.gz", f"done-{month}.1.tar.gz")
    for index, target, extend in (
        (small, f"done-{month}.1.tar.gz", True),
        (full, f"done-{month}.2.tar.gz", False),
        (None, f"done-{month}.2.tar.gz", False),  # unreadable: never rewritten
    ):
        listing = project(
            done=(entry("done/x.md", 40 * DAY),),
            archives=names,
            indexes={names[1]: index},
        )
        (action,) = decide(listing).actions
        assert isinstance(action, ArchiveFiles)
        assert (action.archive.name, action.extend) == (target, extend)


def test_only_the_newest_archive_of_a_month_with_old_files_is_read() -> None:
    """The plan needs the index of the newest archive of each month it will add to."""
    month = p.month_of(entry("done/x.md", 40 * DAY).mtime_ns)
    listing = project(
        done=(entry("done/x.md", 40 * DAY), entry("done/young.md", DAY)),
        archives=(
            f"done-{month}.tar.gz",
            f"done-{month}.3.tar.gz",
            f"done-{month}.10.tar.gz",
            "done-2020-01.tar.gz",
            f"failed-{month}.tar.gz",
        ),
    )
    assert p.archives_to_read(listing, NOW, CONFIG) == [f"done-{month}.10.tar.gz"]


def test_a_file_the_newest_archive_holds_is_only_removed_never_archived_again() -> None:
    """Same name, size and hash as a member: an interrupted pass archived it already."""
    month = p.month_of(entry("done/x.md", 40 * DAY).mtime_ns)
    name = f"done-{month}.tar.gz"
    index = ArchiveIndex((Member("x.md", "x.md", 10, "h-x"), Member("y.1.md", "y.md", 10, "h-y")))
    listing = project(
        done=(
            entry("done/x.md", 40 * DAY, sha="h-x"),
            entry("done/y.md", 40 * DAY, sha="h-y"),  # stored under a suffixed member name
            entry("done/z.md", 40 * DAY, sha="h-other"),  # same name as nothing: new
            entry("done/w.md", 40 * DAY),  # not hashed: cannot be in it
        ),
        archives=(name,),
        indexes={name: index},
    )
    actions = decide(listing).actions
    removed = [a.entry.name for a in actions if isinstance(a, RemoveArchived)]
    assert sorted(removed) == ["x.md", "y.md"]
    assert all(a.archive == ARCH / name for a in actions if isinstance(a, RemoveArchived))
    assert sorted(archived(decide(listing))[name]) == ["w.md", "z.md"]
    assert isinstance(actions[-1], ArchiveFiles), "leftovers go before anything is written"


def test_a_same_named_file_with_other_content_is_archived_not_removed() -> None:
    """A name match alone proves nothing: size and hash must match too."""
    month = p.month_of(entry("done/x.md", 40 * DAY).mtime_ns)
    name = f"done-{month}.tar.gz"
    listing = project(
        done=(entry("done/x.md", 40 * DAY, sha="new", size=10),),
        archives=(name,),
        indexes={name: ArchiveIndex((Member("x.md", "x.md", 10, "old"),))},
    )
    assert archived(decide(listing)) == {name: ["x.md"]}


def test_only_files_whose_name_and_size_an_archive_member_has_are_hashed() -> None:
    """Hashing is asked for only where a match is possible."""
    month = p.month_of(entry("done/x.md", 40 * DAY).mtime_ns)
    name = f"done-{month}.tar.gz"
    listing = project(
        done=(
            entry("done/x.md", 40 * DAY, size=10),
            entry("done/y.md", 40 * DAY, size=11),
            entry("done/z.md", 40 * DAY, size=10),
            entry("done/young.md", DAY, size=10),
        ),
        archives=(name,),
        indexes={
            name: ArchiveIndex((Member("x.md", "x.md", 10, "h"), Member("y.md", "y.md", 10, "h")))
        },
    )
    assert p.files_to_hash(listing, NOW, CONFIG) == [QUEUE / "done/x.md"]


def test_a_result_of_a_task_in_flight_waits_for_it() -> None:
    """``x.md`` and ``x.2.md`` stay while ``x.md`` is claimed; recovery may look for them."""
    listing = project(
        done=(
            entry("done/x.md", 40 * DAY),
            entry("done/x.2.md", 40 * DAY),
            entry("done/xy.md", 40 * DAY),
        ),
        in_flight=frozenset({"x.md"}),
    )
    assert [n for names in archived(decide(listing)).values() for n in names] == ["xy.md"]


def test_only_plain_visible_files_of_done_are_archived() -> None:
    """Links, folders, hard links, foreign files and dotfiles are never opened or archived."""
    listing = project(
        done=(
            entry("done/link.md", 40 * DAY, kind=EntryKind.OTHER),
            entry("done/dir.md", 40 * DAY, kind=EntryKind.DIR),
            entry("done/.hidden.md", 40 * DAY),
        ),
    )
    assert decide(listing).actions == ()


# -- sweeps ------------------------------------------------------------------------------


def test_quarantine_entries_are_deleted_keep_failed_after_they_were_quarantined() -> None:
    """The later of mtime and ctime counts (the move into quarantine sets the ctime)."""
    listing = project(
        quarantine=(
            entry("quarantine/old.md", 100 * DAY),
            entry("quarantine/dir.md", 100 * DAY, kind=EntryKind.DIR),
            entry("quarantine/moved-late.md", 100 * DAY, ctime_age=10 * DAY),
            entry("quarantine/link.md", 95 * DAY, kind=EntryKind.OTHER),
        ),
    )
    actions = decide(listing).actions
    assert [(a.entry.name, a.reason) for a in actions if isinstance(a, Delete)] == [
        ("old.md", Reason.QUARANTINE_EXPIRED),
        ("dir.md", Reason.QUARANTINE_EXPIRED),
        ("link.md", Reason.QUARANTINE_EXPIRED),
    ]
    assert not any(isinstance(a, ArchiveFiles) for a in actions)


def test_stale_tmp_files_temps_and_old_orphan_records_are_deleted() -> None:
    """Records need the grace age; tmp/ staleness and orphan-ness come from the queue's rules."""
    listing = project(
        stale_tmp=(entry("tmp/producer.tmp", 2 * DAY),),
        orphan_records=(
            entry(".agentq/old.md.json", p.RECORD_GRACE + 1),
            entry(".agentq/fresh.md.json", p.RECORD_GRACE - 1),
        ),
        archive_temps=(entry("archive/.agentq-tmp-1-ab", 0),),
    )
    assert [(a.entry.name, a.reason) for a in decide(listing).actions] == [  # type: ignore[union-attr]
        (".agentq-tmp-1-ab", Reason.ARCHIVE_TEMP),
        ("producer.tmp", Reason.STALE_TMP),
        ("old.md.json", Reason.ORPHAN_RECORD),
    ]


def test_signal_files_older_than_a_day_are_deleted() -> None:
    """Orphan hook signals go after a day; folders in the signal folder are left alone."""
    signals = (
        entry("s/1-Stop.json", DAY + 1),
        entry("s/2-Stop.json", DAY - 1),
        entry("s/sub", 2 * DAY, kind=EntryKind.DIR),
    )
    plan = p.plan(Listing((), signals), NOW, CONFIG)
    assert [(a.entry.name, a.reason) for a in plan.actions] == [  # type: ignore[union-attr]
        ("1-Stop.json", Reason.ORPHAN_SIGNAL)
    ]


# -- kept worktrees ----------------------------------------------------------------------


def tree(name: str, age: float) -> Entry:
    """A task worktree folder (whose task is not in flight) last modified ``age`` seconds ago."""
    return entry(f"worktrees/{name}", age, kind=EntryKind.DIR, size=0)


@pytest.mark.parametrize(
    ("age", "keep", "pruned"),
    [
        (7 * DAY - 1, "7d", False),
        (7 * DAY, "7d", False),
        (7 * DAY + 0.001, "7d", True),
        (2 * 3600, "1h", True),
        (400 * DAY, None, False),
        (400 * DAY, False, False),
    ],
    ids=[
        "a worktree a second younger than keep_worktrees stays",
        "one exactly keep_worktrees old stays",
        "one just older than keep_worktrees is pruned",
        "a shorter keep_worktrees prunes sooner",
        "keep_worktrees null keeps one forever",
        "keep_worktrees off keeps one forever",
    ],
)
def test_a_kept_worktree_is_pruned_once_older_than_keep_worktrees(
    age: float, keep: str | bool | None, pruned: bool
) -> None:
    """The folder's age against ``keep_worktrees``; null (or off) never prunes."""
    config = JanitorConfig.model_validate({"keep_worktrees": keep})
    plan = decide(project(worktrees=(tree("fix-login", age),)), config=config)
    expected = (PruneWorktree(QUEUE / "worktrees/fix-login"),) if pruned else ()
    assert plan.actions == expected


def test_a_bounded_pass_prunes_the_oldest_worktrees_first_and_defers_the_rest() -> None:
    """A daemon pass prunes a couple of worktrees (each is a whole tree); the rest waits."""
    trees = (*(tree(f"t{i}", (10 + i) * DAY) for i in range(5)), tree("young", DAY))
    bounded = decide(project(worktrees=trees), limits=Limits(worktrees=2))
    assert [a.path.name for a in bounded.actions] == ["t4", "t3"]  # type: ignore[union-attr]
    assert bounded.deferred == 3
    assert len(decide(project(worktrees=trees)).actions) == 5
    assert Limits().worktrees == p.DEFAULT_PASS_WORKTREES


# -- limits ------------------------------------------------------------------------------


def test_limits_bound_a_pass_and_count_what_waits() -> None:
    """A bounded pass does the oldest files first and reports the rest as deferred."""
    done = tuple(entry(f"done/t{i}.md", (40 + i) * DAY, size=100) for i in range(10))
    plan = decide(project(done=done), limits=Limits(files=4, bytes=10**6))
    assert [n for names in archived(plan).values() for n in names] == [
        "t9.md",
        "t8.md",
        "t7.md",
        "t6.md",
    ]
    assert plan.deferred == 6
    by_bytes = decide(project(done=done), limits=Limits(files=100, bytes=250))
    assert sum(len(a.files) for a in by_bytes.actions if isinstance(a, ArchiveFiles)) == 3
    assert decide(project(done=done)).deferred == 0


# -- names and times ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "parsed"),
    [
        ("done-2026-11.tar.gz", (p.Bucket("2026-11", "done"), 0)),
        ("failed-2026-01.7.tar.gz", (p.Bucket("2026-01", "failed"), 7)),
        ("done-2026-11.0.tar.gz", None),
        ("done-2026-11.tar", None),
        ("other-2026-11.tar.gz", None),
        (".agentq-tmp-1-ab", None),
    ],
    ids=["first", "numbered", "zero is never written", "not gzip", "other folder", "temp"],
)
def test_archive_names_parse_back_to_their_bucket(
    name: str, parsed: tuple[p.Bucket, int] | None
) -> None:
    """Archive names round-trip; anything else in archive/ is not an archive."""
    assert p.parse_archive_name(name) == parsed
    if parsed is not None:
        assert parsed[0].archive_name(parsed[1]) == name


def test_times_are_exact_nanoseconds_and_months_are_utc() -> None:
    """No float rounding at the boundary; a late-evening file belongs to its UTC month."""
    moment = datetime(2026, 11, 30, 23, 59, 59, 999999, tzinfo=UTC)
    assert p.to_ns(moment) == 1796083199999999000
    assert p.month_of(p.to_ns(moment)) == "2026-11"
    assert p.month_of(p.to_ns(moment + timedelta(microseconds=1))) == "2026-12"
