"""The scenarios: what the writer does, what the readers read and how, and which fault.

Each scenario names a *layout* (which caches, where the counters live), the writer's
operations (:data:`benchmarks.race.writes.OPS`), the reader functions
(:data:`benchmarks.race.readers.FUNCTIONS`), the readers' modes, and a fault. The scenarios
that test one thing (a fault, an isolation level, a layout) use :data:`SAFE_OPS` and
:data:`SAFE_READS`, the writes and reads that are right in the plain case, so that a stale
read there is the fault's, not a write kind's.
"""

from __future__ import annotations

from dataclasses import dataclass

ALL_OPS = [
    "create_child",
    "move_child",
    "rename_child",
    "delete_child",
    "update_children",
    "update_move_children",
    "bulk_create_children",
    "delete_parent",
    "delete_parent",
    "recreate_parent",
    "recreate_parent_full",
    "create_orphan",
    "move_orphan",
    "delete_orphan",
    "create_defaulted",
    "move_defaulted",
    "delete_defaulted",
    "create_adopted",
    "move_adopted",
    "delete_adopted",
    "tags_add",
    "tags_remove",
    "tags_clear",
    "tags_set_clear",
    "tags_set",
    "link_create",
    "link_delete",
    "members_add",
    "members_remove",
    "members_clear",
    "members_set_clear",
    "membership_create",
    "membership_delete",
    "membership_role",
    "toggle_tag",
    "toggle_member",
]
ALL_READS = [
    "children",
    "child_count",
    "orphans",
    "orphan_count",
    "defaulted",
    "adopted",
    "tag_ids",
    "tag_parents",
    "member_roles",
    "member_parents",
    "tag_ids_by_row",
    "tag_parents_by_row",
    "member_parents_by_row",
]
SAFE_OPS = [
    "create_child",
    "move_child",
    "rename_child",
    "delete_child",
    "update_children",
    "update_move_children",
    "bulk_create_children",
    "tags_add",
    "tags_remove",
    "members_add",
    "members_remove",
    "membership_role",
]
SAFE_READS = ["children", "child_count", "tag_ids", "tag_parents", "member_roles", "member_parents"]
M2M_READS = [
    "tag_ids",
    "tag_parents",
    "member_roles",
    "member_parents",
    "tag_ids_by_row",
    "tag_parents_by_row",
    "member_parents_by_row",
]
AUTOCOMMIT = ("autocommit", "autocommit", "autocommit")


@dataclass(frozen=True)
class Scenario:
    name: str
    what: str
    ops: list[str]
    reads: list[str]
    #: base: entries and counters in memcached (default) and Redis ("entries");
    #: named: default LocMemCache, entries in memcached "mc"; versions: the counters in a
    #: memcached of their own (VERSIONS_CACHE); evict: default a 1 MB memcached;
    #: replica: base, and the readers read from a replica.
    layout: str = "base"
    readers: tuple[str, ...] = AUTOCOMMIT
    #: None, "freeze", "kill", "evict".
    fault: str | None = None
    #: Self-tests: "uncached" (the readers' switch off), "no-bumps" (the writer's caches
    #: are DummyCache: no bump reaches anyone).
    sabotage: str | None = None
    #: Seconds of the writer's random pause between blocks (uniform from 0).
    pause: float = 0.008
    #: False for a scenario outside the promise: its stale reads are shown, never fail.
    promise: bool = True

    @property
    def long(self) -> bool:
        return self.fault in ("freeze", "kill")


SCENARIOS = [
    Scenario("every-write-kind", "every write kind, autocommit readers", ALL_OPS, ALL_READS),
    Scenario(
        "m2m-clear",
        "m2m clear() and set(clear=True) from both sides, auto and custom through",
        [
            "tags_add",
            "tags_add",
            "tags_clear",
            "tags_set_clear",
            "members_add",
            "members_clear",
            "members_set_clear",
        ],
        M2M_READS,
    ),
    Scenario(
        "through-direct",
        "through rows written directly (custom; auto-created + bump() as the README says)",
        ["link_create", "link_delete", "membership_create", "membership_delete", "membership_role"],
        M2M_READS,
    ),
    Scenario(
        "through-auto-unbumped",
        "outside the promise: an auto-created through model's rows written without bump()",
        ["link_create_unbumped", "link_delete_unbumped"],
        M2M_READS,
        promise=False,
    ),
    Scenario(
        "cascade-through",
        "deleting a parent, tag or member cascades its m2m rows and children",
        ["delete_parent", "recreate_parent_full", "tags_add", "members_add", "toggle_tag", "toggle_member"],
        ["children", *M2M_READS],
    ),
    Scenario(
        "set-null",
        "deleting a parent sets its SET_NULL children's parent to NULL",
        ["delete_parent", "recreate_parent", "create_orphan", "move_orphan"],
        ["orphans", "orphan_count"],
    ),
    Scenario(
        "set-default",
        "deleting a parent moves its SET_DEFAULT children to parent 1",
        ["delete_parent", "recreate_parent", "create_defaulted", "move_defaulted"],
        ["defaulted"],
    ),
    Scenario(
        "set-callable",
        "deleting a parent moves its SET(adopter) children to parent 2",
        ["delete_parent", "recreate_parent", "create_adopted", "move_adopted"],
        ["adopted"],
    ),
    Scenario(
        "read-committed",
        "readers inside atomic() at READ COMMITTED, and an autocommit observer",
        SAFE_OPS,
        SAFE_READS,
        readers=("read_committed", "read_committed", "autocommit"),
    ),
    Scenario(
        "repeatable-read",
        "readers inside atomic() at REPEATABLE READ, and an autocommit observer",
        SAFE_OPS,
        SAFE_READS,
        readers=("repeatable_read", "repeatable_read", "autocommit"),
    ),
    Scenario(
        "named-alias",
        "entries in the memcached alias 'mc', default a per-process LocMemCache",
        SAFE_OPS,
        SAFE_READS,
        layout="named",
    ),
    Scenario(
        "counters-frozen",
        "VERSIONS_CACHE memcached SIGSTOPped for 1.5 s, then SIGCONT",
        SAFE_OPS,
        SAFE_READS,
        layout="versions",
        fault="freeze",
    ),
    Scenario(
        "counters-killed",
        "VERSIONS_CACHE memcached killed, restarted empty 1 s later",
        SAFE_OPS,
        SAFE_READS,
        layout="versions",
        fault="kill",
    ),
    Scenario(
        "eviction",
        "entries and counters in a 1 MB memcached flooded with small and large values",
        SAFE_OPS,
        [*SAFE_READS, "children_blob"],
        layout="evict",
        fault="evict",
    ),
    Scenario(
        "replica",
        "reads from a replica copied 50 ms late, CACHEDCALL['REPLICA_LAG'] = 0.2",
        SAFE_OPS,
        SAFE_READS,
        layout="replica",
    ),
]
SELF_TESTS = [
    Scenario(
        "self-test-uncached",
        "every write kind, the readers' cache switched off (one reader of each mode): must find 0 stale",
        ALL_OPS,
        ALL_READS,
        readers=("repeatable_read", "read_committed", "autocommit"),
        sabotage="uncached",
    ),
    Scenario(
        "self-test-no-bumps",
        "every write kind, the writer's bumps switched off: must find stale reads",
        ALL_OPS,
        ALL_READS,
        sabotage="no-bumps",
    ),
]
BY_NAME = {s.name: s for s in (*SCENARIOS, *SELF_TESTS)}
