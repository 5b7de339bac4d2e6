"""Retry: what is retried and what never is, full-jitter bounds, Retry-After, max attempts, the deadline,
the budget's token accounting, and the naive mode's storm. Fake time; the far end is a scripted function."""

import random
import types
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
import tenacity

from mitigations.core import (
    Call,
    CircuitOpen,
    ConnectionReset,
    ConnectRefused,
    ConnectTimeout,
    FakeClock,
    HttpClientError,
    HttpServerError,
    Outcome,
    PipelineEvents,
    QueuedPastDeadline,
    ReadTimeout,
    ResponseReset,
    RetryBudgetExhausted,
    ServiceUnavailable,
    ThrottleRejected,
    TooManyRequests,
)
from mitigations.retry import (
    BEFORE_SEND_KINDS,
    IDEMPOTENT_METHODS,
    RETRYABLE_KINDS,
    SAFE_KINDS,
    FullJitter,
    Retry,
    RetryBudget,
    RetryBudgetConfig,
    RetryConfig,
    parse_retry_after,
)
from tests.policy_kit import make_call

WALL = 1_700_000_000.0  # a fixed wall-clock "now" for HTTP dates


class Script:
    """A far end that answers with the scripted outcomes in turn (then the last one forever)."""

    def __init__(self, clock: FakeClock, *steps: tuple[int | None, object, dict[str, str]]) -> None:
        self.clock, self.steps, self.calls = clock, list(steps), []

    def __call__(self, call: Call) -> Outcome:
        self.calls.append(call)
        status, error, headers = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        return Outcome(call=call, finished_at=self.clock.now(), status=status, error=error, headers=headers)


def fails(error, status=None, **headers) -> tuple[int | None, object, dict[str, str]]:
    return (status, error, headers)


OK = (200, None, {})
UNAVAILABLE = fails(ServiceUnavailable(), 503)


def bound(config: RetryConfig | None = None, seed: int = 1):
    clock = FakeClock()
    policy = Retry(config or RetryConfig(budget=None), rng=random.Random(seed), wall_clock=lambda: WALL)
    events = PipelineEvents()
    policy.bind(clock, events)
    return policy, clock, events


# -- config ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "word"),
    [
        (lambda: RetryConfig(max_attempts=0), "max_attempts"),
        (lambda: RetryConfig(base=-1), "base"),
        (lambda: RetryConfig(base=1.0, cap=0.5), "cap"),
        (lambda: RetryConfig(cap=float("inf")), "cap"),
        (lambda: RetryConfig(retry_on={"4xx"}), "retry_on"),
        (lambda: RetryConfig(retry_on="503"), "retry_on"),
        (lambda: RetryConfig(max_retry_after=float("nan")), "max_retry_after"),
        (lambda: RetryConfig(methods="GET"), "methods"),
        (lambda: RetryConfig(methods={"GET", "G E T"}), "methods"),
        (lambda: RetryConfig(methods={"GET", 7}), "methods"),
        (lambda: RetryBudgetConfig(ratio=1.5), "ratio"),
        (lambda: RetryBudgetConfig(min_retries_per_second=-1), "min_retries_per_second"),
        (lambda: RetryBudgetConfig(max_balance=0.5), "max_balance"),
    ],
)
def test_bad_config_fails_at_construction_with_one_line_naming_the_value(make, word):
    with pytest.raises(ValueError, match=word) as caught:
        make()
    assert "\n" not in str(caught.value)


def test_defaults_retry_only_safe_kinds_and_naive_retries_every_server_failure():
    safe = {"connect-timeout", "connect-refused", "reset", "reset-mid-response", "503", "429"}
    assert RetryConfig().retry_on == safe == SAFE_KINDS
    naive = RetryConfig.naive(4)
    assert naive.max_attempts == 4 and naive.budget is None and naive.retry_on == RETRYABLE_KINDS
    assert naive.wait(5, random.Random(1)) == 0.0 and not naive.respect_retry_after
    assert "4xx" not in RETRYABLE_KINDS


def test_only_idempotent_methods_are_resent_as_urllib3_allows():
    assert RetryConfig().methods == IDEMPOTENT_METHODS == {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"}
    assert RetryConfig.naive().methods == IDEMPOTENT_METHODS  # the storm, not duplicated work
    assert {"connect-refused", "connect-timeout"} == BEFORE_SEND_KINDS
    assert RetryConfig(methods={"get", "post"}).methods == {"GET", "POST"}


# -- full jitter ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 2, 3, 6, 40, 5000])
def test_full_jitter_stays_within_zero_and_the_capped_exponential(n):
    wait = FullJitter(base=0.05, cap=2.0)
    high = min(2.0, 0.05 * 2 ** min(n, 60))
    rng = random.Random(n)
    samples = [wait(n, rng) for _ in range(2000)]
    assert all(0.0 <= s <= high for s in samples)
    assert len(set(samples)) > 1900  # jittered, not one fixed delay
    assert max(samples) > 0.9 * high and min(samples) < 0.1 * high  # spreads over the whole range


def test_full_jitter_ceiling_matches_tenacity_wait_exponential():
    ours = FullJitter(base=0.05, cap=2.0)
    theirs = tenacity.wait_exponential(multiplier=0.05, max=2.0)
    for n in range(12):
        state = types.SimpleNamespace(attempt_number=n + 1)  # tenacity's exponent is attempt_number - 1
        assert ours.ceiling(n) == pytest.approx(theirs(state))


def test_zero_base_means_immediate():
    assert FullJitter(base=0.0, cap=0.0)(3, random.Random(1)) == 0.0


# -- Retry-After ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        ("0", 0.0),
        (" 7 ", 7.0),
        (format_datetime(datetime.fromtimestamp(WALL + 30, UTC), usegmt=True), 30.0),  # IMF-fixdate
        (datetime.fromtimestamp(WALL + 45, UTC).strftime("%A, %d-%b-%y %H:%M:%S GMT"), 45.0),  # RFC 850
        (datetime.fromtimestamp(WALL + 60, UTC).strftime("%a %b %d %H:%M:%S %Y"), 60.0),  # asctime
        (format_datetime(datetime.fromtimestamp(WALL - 300, UTC), usegmt=True), 0.0),  # in the past
        (None, None),
        ("", None),
        ("soon", None),
        ("-1", None),
        ("1.5", None),
        ("12 seconds", None),
        ("Mon, 99 Foo 2020 99:99:99 GMT", None),
        ("٣", None),  # a non-ASCII digit is not 1*DIGIT
    ],
)
def test_retry_after_parses_seconds_and_http_dates_and_rejects_garbage(value, expected):
    result = parse_retry_after(value, WALL)
    assert result == (None if expected is None else pytest.approx(expected))


# -- the policy ----------------------------------------------------------------------------------------------


SAFE_FAILURES = [
    ConnectTimeout(),
    ConnectRefused(),
    ConnectionReset(),
    ResponseReset(),
    ServiceUnavailable(),
    TooManyRequests(),
]


@pytest.mark.parametrize("error", SAFE_FAILURES, ids=str)
def test_safe_failures_of_a_get_are_retried_until_success_with_labelled_attempts(error):
    policy, clock, events = bound()
    retries: list[tuple[Call, float]] = []
    events.on("retry", lambda call, delay: retries.append((call, delay)))
    far = Script(clock, fails(error), OK)
    outcome = policy.execute(make_call(clock), far)
    assert outcome.ok and outcome.call.attempt == 2
    assert [c.attempt for c in far.calls] == [1, 2] and far.calls[0] is not far.calls[1]
    assert len(retries) == 1 and retries[0][0] is far.calls[1] and 0 <= retries[0][1] <= 0.05
    assert (policy.logical_calls, policy.attempts, policy.retries) == (1, 2, 1)


def post(clock: FakeClock) -> Call:
    return Call("POST", "/orders", launched_at=clock.now(), body=b"{}")


@pytest.mark.parametrize("error", SAFE_FAILURES, ids=str)
@pytest.mark.parametrize("config", [RetryConfig(budget=None), RetryConfig.naive(5)], ids=["safe", "naive"])
def test_a_post_is_resent_only_when_it_provably_never_left_the_client(error, config):
    policy, clock, _ = bound(config)
    far = Script(clock, fails(error), OK)
    outcome = policy.execute(post(clock), far)
    if error.kind in ("connect-refused", "connect-timeout"):  # refused or no SYN-ACK: nothing was sent
        assert outcome.ok and len(far.calls) == 2
    else:  # a reset, even before the status line, or an answer: the server may have done the work
        assert outcome.kind == error.kind and len(far.calls) == 1 and policy.retries == 0


@pytest.mark.parametrize(
    ("methods", "resent"), [(frozenset({"GET", "POST"}), True), (None, True), (frozenset({"PUT"}), False)]
)
def test_which_methods_may_be_resent_is_configurable(methods, resent):
    policy, clock, _ = bound(RetryConfig(methods=methods, budget=None))
    far = Script(clock, fails(ResponseReset()), OK)
    assert policy.execute(post(clock), far).ok is resent and len(far.calls) == (2 if resent else 1)


def test_a_429_is_retried_no_sooner_than_its_retry_after():
    policy, clock, events = bound()
    delays: list[float] = []
    events.on("retry", lambda call, delay: delays.append(delay))
    far = Script(clock, fails(TooManyRequests(), 429, **{"Retry-After": "1"}), OK)
    start = clock.now()
    assert policy.execute(make_call(clock), far).ok and len(far.calls) == 2
    assert delays == [1.0] and clock.now() - start == pytest.approx(1.0)


@pytest.mark.parametrize("status", [400, 404, 409])
def test_a_4xx_is_never_retried_even_with_retry_after(status):
    policy, clock, _ = bound(RetryConfig.naive(5))
    far = Script(clock, fails(HttpClientError(str(status)), status, **{"Retry-After": "1"}))
    outcome = policy.execute(make_call(clock), far)
    assert outcome.status == status and len(far.calls) == 1 and policy.retries == 0


@pytest.mark.parametrize("error", [ReadTimeout(), HttpServerError("500")], ids=str)
def test_read_timeouts_and_other_5xx_are_not_retried_by_default(error):
    policy, clock, _ = bound()
    far = Script(clock, fails(error))
    assert not policy.execute(make_call(clock), far).ok and len(far.calls) == 1


def test_a_call_an_inner_policy_shed_is_returned_as_it_is():
    policy, clock, _ = bound(RetryConfig.naive(5))
    far = Script(clock, fails(CircuitOpen()))
    assert policy.execute(make_call(clock), far).kind == "shed:circuit-open" and len(far.calls) == 1


@pytest.mark.parametrize("refusal", [CircuitOpen(), ThrottleRejected(), QueuedPastDeadline()], ids=str)
def test_a_retry_an_inner_policy_refuses_ends_the_call_as_the_failure_it_was_retrying(refusal):
    policy, clock, _ = bound(RetryConfig.naive(3))
    far = Script(clock, UNAVAILABLE, fails(ConnectionReset()), fails(refusal))
    outcome = policy.execute(make_call(clock), far)
    assert outcome.kind == "reset" and outcome.call.attempt == 2  # the last failure on the wire
    assert [c.attempt for c in far.calls] == [1, 2, 3]


def test_max_attempts_counts_the_first_try():
    policy, clock, _ = bound(RetryConfig(max_attempts=3, budget=None))
    far = Script(clock, UNAVAILABLE)
    outcome = policy.execute(make_call(clock), far)
    assert outcome.kind == "503" and outcome.call.attempt == 3
    assert [c.attempt for c in far.calls] == [1, 2, 3] and policy.amplification == 3.0


def test_backoff_sleeps_on_the_clock_within_the_growing_ceiling():
    policy, clock, events = bound(RetryConfig(max_attempts=6, base=0.1, cap=0.3, budget=None), seed=5)
    delays: list[float] = []
    events.on("retry", lambda call, delay: delays.append(delay))
    start = clock.now()
    policy.execute(make_call(clock), Script(clock, fails(ConnectRefused())))
    ceilings = [0.1, 0.2, 0.3, 0.3, 0.3]
    assert len(delays) == 5 and all(0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert clock.now() - start == pytest.approx(sum(delays))


def test_retry_after_sets_a_floor_on_the_wait():
    policy, clock, events = bound()
    delays: list[float] = []
    events.on("retry", lambda call, delay: delays.append(delay))
    far = Script(clock, fails(ServiceUnavailable(), 503, **{"retry-after": "2"}), OK)
    start = clock.now()
    assert policy.execute(make_call(clock), far).ok
    assert delays == [2.0] and clock.now() - start == pytest.approx(2.0)


def test_a_retry_after_beyond_the_cap_ends_the_retries_instead_of_coming_back_early():
    policy, clock, _ = bound(RetryConfig(max_retry_after=5.0, budget=None))
    far = Script(clock, fails(ServiceUnavailable(), 503, **{"Retry-After": "60"}), OK)
    start = clock.now()
    assert policy.execute(make_call(clock), far).kind == "503"
    assert len(far.calls) == 1 and clock.now() == start


def test_never_retries_past_the_deadline():
    policy, clock, _ = bound(RetryConfig(max_attempts=10, base=1.0, cap=1.0, budget=None), seed=3)
    call = make_call(clock, deadline_in=2.5)
    far = Script(clock, fails(ConnectRefused()))
    policy.execute(call, far)
    assert clock.now() <= call.deadline
    assert 2 <= len(far.calls) < 10  # it did retry, but stopped before the deadline
    server_says_later = Script(clock, fails(ServiceUnavailable(), 503, **{"Retry-After": "3"}), OK)
    policy.execute(make_call(clock, deadline_in=2.0), server_says_later)
    assert len(server_says_later.calls) == 1


# -- the budget ----------------------------------------------------------------------------------------------


def test_budget_tokens_deposit_per_call_and_withdraw_per_retry():
    budget = RetryBudget(RetryBudgetConfig(ratio=0.1, max_balance=10.0))
    assert not budget.try_withdraw(0.0) and budget.denials == 1  # starts empty
    for _ in range(10):
        budget.deposit(0.0)
    assert budget.balance == pytest.approx(1.0)
    assert budget.try_withdraw(0.0) and budget.balance == pytest.approx(0.0)
    assert not budget.try_withdraw(0.0) and (budget.withdrawals, budget.denials) == (1, 2)
    for _ in range(1000):
        budget.deposit(0.0)
    assert budget.balance == 10.0  # capped: a healthy spell cannot bank a storm


def test_budget_floor_refills_with_time():
    budget = RetryBudget(RetryBudgetConfig(ratio=0.0, min_retries_per_second=2.0, max_balance=5.0))
    budget.deposit(100.0)
    assert budget.balance == 0.0
    assert not budget.try_withdraw(100.2)
    assert budget.try_withdraw(100.5)  # 0.5 s at 2/s is one token
    assert budget.try_withdraw(200.0) and budget.balance == pytest.approx(4.0)  # refill capped at 5


def test_the_budget_caps_retries_at_a_tenth_of_calls_during_an_outage():
    policy, clock, events = bound(RetryConfig(max_attempts=3, budget=RetryBudgetConfig()))
    shed: list[Outcome] = []
    events.on("shed", shed.append)
    far = Script(clock, fails(ConnectRefused()))
    outcomes = [policy.execute(make_call(clock), far) for _ in range(1000)]
    assert all(o.kind == "connect-refused" for o in outcomes)  # the real failure, not a shed
    assert policy.retries <= 100 and policy.retries >= 95
    assert policy.amplification <= 1.1 and len(far.calls) == 1000 + policy.retries
    assert policy.budget_denials == len(shed) and policy.budget_denials >= 900
    assert all(isinstance(o.error, RetryBudgetExhausted) and o.kind == "shed:budget" for o in shed)
    assert {o.call.attempt for o in shed} == {2, 3}  # the retry that was held back, labelled


def test_naive_retries_storm_the_server_during_an_outage():
    policy, clock, _ = bound(RetryConfig.naive(3))
    far = Script(clock, fails(ConnectRefused()))
    start = clock.now()
    for _ in range(100):
        policy.execute(make_call(clock), far)
    assert len(far.calls) == 300 and policy.amplification == 3.0
    assert clock.now() == start  # immediate: no backoff at all
