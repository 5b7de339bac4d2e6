"""The pipeline contract every policy relies on: order, deadlines, outcomes and events."""

from mitigations.core import (
    BasePolicy,
    Call,
    CircuitOpen,
    FakeClock,
    HttpClientError,
    Outcome,
    Pipeline,
    ServiceUnavailable,
)


class Recorder(BasePolicy):
    def __init__(self, tag: str, trail: list[str]) -> None:
        super().__init__()
        self.tag, self.trail = tag, trail

    def execute(self, call, proceed):
        self.trail.append(self.tag)
        return proceed(call)


class Refuser(BasePolicy):
    def execute(self, call, proceed):
        return self.shed(call, CircuitOpen())


class Echo:
    """A transport that answers 200 at once and counts what reached it."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock, self.sent = clock, []

    def send(self, call: Call) -> Outcome:
        self.sent.append(call)
        return Outcome(call=call, finished_at=self.clock.now(), status=200)


def test_policies_run_outermost_first_and_reach_the_transport():
    clock, trail = FakeClock(), []
    transport = Echo(clock)
    pipeline = Pipeline([Recorder("a", trail), Recorder("b", trail)], transport, clock=clock)
    outcome = pipeline.execute(Call("GET", "/doWork", launched_at=clock.now()))
    assert trail == ["a", "b"]
    assert outcome.ok and outcome.kind == "ok" and len(transport.sent) == 1


def test_deadline_counts_from_launch_not_from_entry():
    clock = FakeClock()
    pipeline = Pipeline([], Echo(clock), clock=clock, total_timeout=2.0)
    call = Call("GET", "/", launched_at=clock.now() - 0.5)
    pipeline.execute(call)
    assert call.deadline == call.launched_at + 2.0
    assert call.remaining(clock.now()) == 1.5


def test_shed_calls_never_reach_the_wire_and_are_announced():
    clock = FakeClock()
    transport = Echo(clock)
    pipeline = Pipeline([Refuser()], transport, clock=clock)
    seen: dict[str, list[Outcome]] = {"shed": [], "wire": []}
    pipeline.events.on("shed", seen["shed"].append)
    pipeline.events.on("wire", seen["wire"].append)
    outcome = pipeline.execute(Call("GET", "/", launched_at=clock.now()))
    assert outcome.shed and outcome.kind == "shed:circuit-open" and not outcome.reached_wire
    assert transport.sent == [] and seen["wire"] == [] and seen["shed"] == [outcome]


def test_4xx_fails_the_request_but_not_the_server():
    call = Call("GET", "/", launched_at=0.0)
    client_side = Outcome(call=call, finished_at=1.0, status=404, error=HttpClientError("404"))
    overloaded = Outcome(call=call, finished_at=1.0, status=503, error=ServiceUnavailable("503"))
    assert not client_side.ok and not client_side.is_server_failure
    assert overloaded.is_server_failure and overloaded.kind == "503"


def test_error_messages_carry_no_variable_data_by_default():
    assert repr(CircuitOpen()) == "CircuitOpen('circuit-open')"


def test_fake_clock_wait_times_out_by_advancing():
    import gevent.event

    clock = FakeClock(start=10.0)
    assert clock.wait(gevent.event.Event(), 3.0) is False
    assert clock.now() == 13.0


def test_a_call_whose_deadline_passed_in_the_client_is_shed_not_sent():
    clock = FakeClock()
    transport = Echo(clock)
    pipeline = Pipeline([], transport, clock=clock, total_timeout=1.0)
    outcome = pipeline.execute(Call("GET", "/", launched_at=clock.now() - 1.5))
    assert outcome.kind == "shed:deadline" and not outcome.is_server_failure
    assert transport.sent == []
