"""The columns of the two CSV files Hammerlab writes beside Locust's own, defined once.

`locust_plugin` writes them (`PREFIX_server.csv`, `PREFIX_mitigations.csv`) and `comparison` reads
them. Both import the names from here, so a column renamed here is renamed for both, and a column a
reader expects but no writer writes fails a test (tests/test_csv_schema.py) rather than reading empty.
The module lives in `mitigations`, the lowest layer both import, because importing `locust_plugin`
loads Locust and registers its listeners, and `comparison` drives Locust only as a subprocess.

Columns are only ever appended, so readers of the older columns are unaffected.

`PREFIX_server.csv`: one row per sample of the target (`locust_plugin.server_sampler`):

  timestamp         unix seconds (3 decimals): from the series, when the server recorded the sample
                    (its clock mapped onto the sampler's); from /stats, when the answer arrived
  elapsed_s         seconds since the test started
  lag_ms            the server's event-loop lag (toobusy's measure)
  in_flight         /doWork requests inside the server
  concurrent        the seed's `concurrent`: tasks waiting on their timer
  sockets           connections open to the server, not counting the sampler's own
  requests_total    /doWork requests received, since the server's last reset
  completed_total   answered 200
  rejected_total    shed by the server with 503 "too busy"
  errors_total      failed by an injected fault
  completed_per_s   rates of the three totals over the interval since the previous sample;
  rejected_per_s    empty on the first sample of a test. A server reset (or restart) between two
  errors_per_s      samples counts from the reset, over the time since it
  faults            active fault kinds, sorted, joined by ';'; empty if none
  peak_lag_ms       the server's own highest lag, in_flight and sockets since it started or was last
  peak_in_flight    reset, as its /stats reports them. A melting server answers /stats late, so its
  peak_sockets      worst moments fall between samples; these keep them. peak_sockets subtracts the
                    sampler's connection like `sockets` (so it may be one low). Empty when the
                    target's /stats has no peaks
  server_time       the server's own wall-clock time of the sample (unix s, 3 decimals)
  server_seq        the record's number in the target's series (consecutive: a gap is a lost sample);
                    empty when sampled from /stats
  expired_total        answered 504 because the request's propagated deadline had passed (--drop-expired)
  work_cpu_ms_total    CPU ms of /doWork's CPU-bound part, and the part of it spent for clients that had
  wasted_cpu_ms_total  already given up (deadline passed when it finished, or connection closed)
  wasted_work_ratio    wasted / work CPU over the interval since the previous sample (0 to 1); empty on
                       the first sample of a test, when no work was done in the interval, or when the
                       target does not report it
  critical_requests_total, critical_completed_total, critical_rejected_total, and the same three for
  sheddable_: /doWork requests by their Hammerlab-Criticality header (none: critical), and how many of
  them completed or were rejected (503, too busy); --priority-shedding rejects sheddable ones first.
  Empty when the target's /stats has no `by_criticality_total`

With `--server-metrics URL` the columns are whatever `--server-metric` mapped; the others stay empty.

`PREFIX_mitigations.csv`: long format, one row per sample per worker per client, plus one row per
client with worker `all` that sums the workers (`locust_plugin.mitigation_rows`):

  timestamp                  unix seconds (3 decimals) of the sample
  elapsed_s                  seconds since the test started
  worker                     `local` in a single process, else the Locust worker id; `all` for the sums
  client                     the user class, e.g. ThrottledClient
  concurrent                 the client's own in-flight count, as the seed logged it
  max_concurrent             its highest value this test (in `all`: the sum of the workers' highs)
  launched_total             logical calls launched
  launched_per_s             launched per second over the last second or so
  completed_total            logical calls finished (answered, failed or shed)
  wire_total                 attempts that reached the wire (retries included)
  wire_failures_total        of those, the ones that failed (any server-failure kind, 4xx included)
  shed_total                 calls a mitigation held back
  shed_per_s                 shed per second, over the same interval
  shed_by_cause              like `circuit-open=3;throttle=12`, causes sorted; empty if none
  breaker_state              closed, open or half-open; empty without a breaker; in `all` when the
                             workers differ: `closed=1;open=1`
  breaker_transitions_total  breaker state changes; empty without a breaker
  limit                      the adaptive concurrency limit; empty without one (in `all`: the sum)
  throttle_in_flight         calls holding a throttle slot; empty without a throttle
  queue_depth                calls waiting in a limiter's queue (throttle or adaptive); empty without
  pool_in_use                sockets held from the client's pool; empty without a socket pool
  pool_waiting               calls waiting for a pooled socket; empty without a socket pool
  timeouts_total             wire outcomes of kind read-timeout, connect-timeout or deadline

The accounting (`locust_plugin.ledger`; logical calls, each counted once by its final outcome, so
`launched_total = ok_total + server_errors_total + shed_total + unfinished_total + pending + concurrent
+ lost_with_worker` on every row, and with nothing in flight or queued at the end, without `pending`
and `concurrent`):

  ok_total                   calls answered without error
  server_errors_total        calls whose final attempt failed on the wire (any kind)
  server_error_kinds         those calls by their final kind, like `connect-timeout=3;503=12`
  unfinished_total           calls still in flight when the test's drain ran out
  pending                    calls `Defer` keeps for later right now (not yet replayed or expired); 0
                             without a defer layer, and 0 after the drain (what is still queued then
                             is unfinished)
  skipped_total              launch slots the generator missed (never launched, never timed); a class
                             that skipped more than `SKIP_WARN_SHARE` of them is flagged wherever shown
  slo_ms                     the SLO the next column counts against
  slo_ok_total               calls answered 2xx within slo_ms of their scheduled launch
  p50_ms p95_ms p99_ms p999_ms max_ms
                             latency of answered calls (ok or failed) from the scheduled launch, from
                             an HdrHistogram (3 significant digits); in `all`, the workers' histograms
                             merged, not their percentiles averaged

`Defer` (docs/defer.md); empty without a defer layer:

  deferred_total             calls `Defer` kept for later (each is `pending` until its replay or
                             expiry ends it; never in shed_total)
  replayed_total             deferred calls replayed to a final outcome (ok or not)
  expired_total              deferred calls dropped unsent, older than --defer-max-age-s
  defer_queue_depth          calls held in the defer queue now (queued, being written or replayed)
  replay_p50_ms              replay delay, launch to final answer, from an HdrHistogram (3 significant
  replay_p95_ms                digits) of every replay this test; in `all`, the workers' histograms
  replay_p99_ms                merged
  replay_max_ms
  defer_in_doubt_total       rows an earlier run left on the wire (a replay's outcome unknown) that are
                             not safe to send twice (no Idempotency-Key, not an idempotent method): set
                             aside in the file, never sent; counted by the run that found them
  defer_bad_rows_total       rows found in the file that fail the request checks of a fresh call (bad
                             JSON, a CRLF path, a header the client owns, ...): set aside, never sent
  kept_total                 of unfinished_total: deferred calls still queued when the test's drain
                             ran out, left on disk for the next run (`lost` = launched - ok - kept)

`Hedge` (docs/hedging.md); empty without a hedge layer. A hedged call is still one call in the
accounting above, counted once by the answer it returned:

  hedged                     calls that sent a hedge (a second copy after the hedge delay)
  hedge_won                  of those, the calls whose returned answer was the hedge's

Criticality (`--criticality-mix`, docs/criticality.md); empty without a mix. The ledger's accounting
above, split by the call's `Hammerlab-Criticality` label, so each class keeps the identity: after the
drain `X_launched_total = X_ok_total + X_server_errors_total + X_shed_total + X_unfinished_total +
X_lost_with_worker` (mid-run, plus its calls in flight and pending), for X = critical and sheddable.
Calls an earlier run left in `Defer`'s file are in the totals only.

  critical_launched_total        critical calls launched
  critical_ok_total              of those, answered without error
  critical_server_errors_total   failed on the wire
  critical_shed_total            held back by a mitigation (sheddable calls are refused first)
  critical_unfinished_total      still in flight when the drain ran out
  critical_lost_with_worker      a lost worker's critical calls in flight or pending at its last report
  critical_slo_ok_total          answered 2xx within slo_ms of their scheduled launch
  critical_p99_ms                p99 latency of the answered ones, from their own HdrHistogram (in
                                 `all`, the workers' histograms merged)
  sheddable_...                  the same eight for sheddable calls

A lost worker (docs/distributed.md; the master saw no heartbeat for Locust's liveness window, about
4 s, because the worker died or was cut off): its rows keep the numbers of its last report, with
`concurrent` and `pending` moved into

  lost_with_worker           calls the worker had in flight or pending at its last report, whose
                             outcome the master will never learn; 0 for a worker that is not lost. In
                             `all`, the sum; part of the identity above (and of `lost` in the summary)
  worker_lost_at_s           seconds since the test started (the master's clock) when the master
                             marked the worker lost; empty unless lost. A worker that reports again
                             is no longer lost: its new cumulative numbers replace the old ones, and
                             both columns go back to 0 and empty

`shed_total` and `shed_by_cause` count calls whose final outcome was shed (the ledger), not shed events:
a retry the budget refused is a `SHED ... [budget]` row in Locust's stats but ends its call as the
failure it was retrying.
"""

from __future__ import annotations

from mitigations.criticality import CRITICALITIES

SERVER_CRITICALITY_ENDS = ("requests", "completed", "rejected")  # /stats' by_criticality_total counts
SERVER_CRITICALITY_COLUMNS = tuple(
    f"{label}_{ended}_total" for label in CRITICALITIES for ended in SERVER_CRITICALITY_ENDS
)

SERVER_COLUMNS = (
    "timestamp",
    "elapsed_s",
    "lag_ms",
    "in_flight",
    "concurrent",
    "sockets",
    "requests_total",
    "completed_total",
    "rejected_total",
    "errors_total",
    "completed_per_s",
    "rejected_per_s",
    "errors_per_s",
    "faults",
    "peak_lag_ms",
    "peak_in_flight",
    "peak_sockets",
    "server_time",
    "server_seq",
    "expired_total",
    "work_cpu_ms_total",
    "wasted_cpu_ms_total",
    "wasted_work_ratio",
    *SERVER_CRITICALITY_COLUMNS,
)

# The per-criticality columns: each of these after `critical_` and after `sheddable_`.
CRITICALITY_STATS = (
    "launched_total",
    "ok_total",
    "server_errors_total",
    "shed_total",
    "unfinished_total",
    "lost_with_worker",
    "slo_ok_total",
    "p99_ms",
)
CRITICALITY_COLUMNS = tuple(f"{label}_{stat}" for label in CRITICALITIES for stat in CRITICALITY_STATS)

MITIGATION_COLUMNS = (
    "timestamp",
    "elapsed_s",
    "worker",
    "client",
    "concurrent",
    "max_concurrent",
    "launched_total",
    "launched_per_s",
    "completed_total",
    "wire_total",
    "wire_failures_total",
    "shed_total",
    "shed_per_s",
    "shed_by_cause",
    "breaker_state",
    "breaker_transitions_total",
    "limit",
    "throttle_in_flight",
    "queue_depth",
    "pool_in_use",
    "pool_waiting",
    "timeouts_total",
    "ok_total",
    "server_errors_total",
    "server_error_kinds",
    "unfinished_total",
    "pending",
    "skipped_total",
    "slo_ms",
    "slo_ok_total",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "p999_ms",
    "max_ms",
    "deferred_total",
    "replayed_total",
    "expired_total",
    "defer_queue_depth",
    "replay_p50_ms",
    "replay_p95_ms",
    "replay_p99_ms",
    "replay_max_ms",
    "defer_in_doubt_total",
    "defer_bad_rows_total",
    "kept_total",
    "hedged",
    "hedge_won",
    *CRITICALITY_COLUMNS,
    "lost_with_worker",
    "worker_lost_at_s",
)
LATENCY_COLUMNS = ("p50_ms", "p95_ms", "p99_ms", "p999_ms", "max_ms")

LOCAL_WORKER = "local"  # the `worker` of a single-process run
ALL_WORKERS = "all"  # the `worker` of the rows that sum a client's workers

# Locust's PREFIX_stats.csv: the `Type` of the rows the reporter fires for calls that never reached the
# wire (the shed, by cause) and for calls still in flight when the drain ran out.
SHED_REQUEST_TYPE = "SHED"
UNFINISHED_REQUEST_TYPE = "UNFINISHED"

SKIP_WARN_SHARE = 0.01  # a generator that missed more than this share of its launch slots is flagged


def skip_share(launched: int, skipped: int) -> float:
    """Skipped slots as a share of intended launches (launched + skipped)."""
    intended = launched + skipped
    return skipped / intended if intended else 0.0


def too_many_skipped(launched: int, skipped: int) -> bool:
    return skip_share(launched, skipped) > SKIP_WARN_SHARE
