"""Deduplication under races and faults: 20 concurrent deliveries of one message from threads
and from separate make serve processes, a process killed in the middle of handle, the store
stopped mid-run (each on dynalite, and on moto through a proxy that serializes its requests),
and a soak of more than 10,000 deliveries with injected faults (on dynalite, whose
conditional writes are atomic; moto is too slow for it: about 15 ms a request here).
Effects are counted in a store of their own (a list under a lock, or a file written with
O_APPEND), never from log lines."""
import concurrent.futures
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest

import dedup_handler
import dynamo
import lambda_events as ev
import lambda_function as lf
from signed_webhooks import pipeline
from conftest import KEY, NEXT, ROOT
from peers import free_port, post, running
from test_dedup import URL, Context, delivery, new_id, replay

CONFIG = {**dynamo.DUMMY_CREDENTIALS, "DEDUP_TABLE": dynamo.TABLE,
          "QSTASH_CURRENT_SIGNING_KEY": KEY, "QSTASH_NEXT_SIGNING_KEY": NEXT,
          "QSTASH_URL": URL, "QSTASH_DESTINATION_URL": URL}


@contextlib.contextmanager
def peer(name):
    """A peer with the table: dynalite as it is, or moto behind a proxy that serializes its
    requests (moto's threaded server does not make a conditional write atomic). `endpoint`
    is what the handler calls; `peer_process` is the peer's process."""
    with getattr(dynamo, name)() as process:
        dynamo.create_table(process.endpoint)
        if name == "dynalite":
            process.peer_process = process
            yield process
            return
        proxy = dynamo.Proxy(process.endpoint, serialize=True)
        proxy.peer_process = process
        try:
            yield proxy
        finally:
            proxy.close()


@pytest.fixture(scope="module", params=["dynalite", "moto"])
def store(request):
    with peer(request.param) as endpoint_holder:
        yield endpoint_holder


@pytest.fixture(scope="module")
def dynalite_store():
    with peer("dynalite") as process:
        yield process


@pytest.fixture
def dedup_env(store, monkeypatch):
    for name, value in {**CONFIG, "AWS_ENDPOINT_URL": store.endpoint}.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL_DYNAMODB", "AWS_SESSION_TOKEN", "DEDUP_TTL"):
        monkeypatch.delenv(name, raising=False)
    return store


LINES = threading.local()  # each thread's log lines from lambda_handler


def print_per_thread(*values, **options):
    """lambda_function's `print`, while these tests run: each thread keeps its own lines."""
    LINES.__dict__.setdefault("lines", []).append(" ".join(map(str, values)))


@pytest.fixture(autouse=True)
def per_thread_output(monkeypatch):
    """The handler's log lines kept per thread (sys.stdout is one for all threads)."""
    monkeypatch.setattr(pipeline, "print", print_per_thread, raising=False)


def quietly(event, context):
    """lambda_handler with its log line kept, also from many threads: (response, log)."""
    LINES.lines = []
    response = lf.lambda_handler(event, context)
    return response, json.loads(LINES.lines[-1])


# --- 20 concurrent deliveries of one message ------------------------------------------------

def test_twenty_threads_deliver_one_message_and_handle_runs_once(
        dedup_env, monkeypatch):
    message_id, effects, lock = new_id(), [], threading.Lock()

    def handle(message):
        time.sleep(0.3)  # long enough for every other delivery to arrive meanwhile
        with lock:
            effects.append(message.message_id)
        return {"applied": message.message_id}
    monkeypatch.setattr(lf, "handle", handle)
    events = [delivery(message_id) for _ in range(20)]
    start = threading.Barrier(20)

    def deliver(event):
        start.wait()
        return quietly(event, Context())
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        results = list(pool.map(deliver, events))
    statuses = sorted(response["statusCode"] for response, _ in results)
    assert effects == [message_id]
    assert set(statuses) <= {200, 409} and statuses.count(200) >= 1, statuses
    assert [log["dedup"] for _, log in results].count("new") == 1
    print("20 threads: %d answered 200, %d answered 409" % (
        statuses.count(200), statuses.count(409)))


def test_twenty_deliveries_across_separate_processes_run_handle_once(
        dedup_env, tmp_path):
    """Five `make serve` processes (tools/serve.py, one request at a time each, like five
    Lambda instances) share the table; 20 deliveries arrive at once."""
    effects_file = str(tmp_path / "effects")
    env = {**os.environ, "DEDUP_EFFECTS": effects_file, "DEDUP_SLEEP": "0.5",
           "HANDLER": "dedup_handler.lambda_handler",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)])}
    ports = [free_port() for _ in range(5)]
    message_id = new_id()
    with contextlib.ExitStack() as stack:
        for port in ports:
            stack.enter_context(running([sys.executable, str(ROOT / "tools/serve.py")],
                                        env={**env, "PORT": str(port)}, port=port))
        body = b'{"job":"once"}'
        requests = []
        for n in range(20):
            headers = ev.qstash_headers(KEY, body, URL, message_id=message_id)
            requests.append(("http://127.0.0.1:%d/dedup" % ports[n % 5], headers))
        start = threading.Barrier(20)

        def deliver(request):
            start.wait()
            return post(request[0], body, request[1])[0]
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            statuses = sorted(pool.map(deliver, requests))
    recorded = dedup_handler.effects(effects_file)
    assert [what for what, _, _ in recorded] == ["start", "effect"], recorded
    assert set(statuses) <= {200, 409} and statuses.count(200) >= 1, statuses
    print("20 deliveries over 5 processes: %d answered 200, %d answered 409"
          % (statuses.count(200), statuses.count(409)))


# --- Faults -----------------------------------------------------------------------------------

def test_a_process_killed_mid_handle_is_taken_over_after_its_lease(
        dedup_env, tmp_path, monkeypatch):
    effects_file = str(tmp_path / "effects")
    message_id = new_id()
    first = delivery(message_id)
    runner = ("import json, sys, dedup_handler\n"
              "dedup_handler.lambda_handler(json.load(sys.stdin), None)\n")
    env = {**os.environ, "DEDUP_EFFECTS": effects_file, "DEDUP_HANG": "1",
           "DEDUP_REMAINING_MS": "1500",  # lease: 1.5 s + 1 s margin
           "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT), str(ROOT / "tools")])}
    process = subprocess.Popen([sys.executable, "-c", runner], env=env, stdin=subprocess.PIPE,
                               stdout=subprocess.DEVNULL)
    process.stdin.write(json.dumps(first).encode())
    process.stdin.close()
    while not dedup_handler.effects(effects_file):
        assert process.poll() is None, "the first delivery exited before handle started"
        time.sleep(0.01)
    leased_at = time.time()
    process.send_signal(signal.SIGKILL)  # as Lambda does on a timeout or out of memory
    process.wait()

    monkeypatch.setenv("DEDUP_EFFECTS", effects_file)
    monkeypatch.setattr(lf, "handle", dedup_handler.handle)
    response, log = quietly(delivery(message_id), Context())  # within the lease
    assert response["statusCode"] == 409 and log["dedup"] == "in_progress"
    assert 1 <= int(response["headers"]["Retry-After"]) <= 3
    assert len(dedup_handler.effects(effects_file)) == 1  # handle not called again
    time.sleep(max(0.0, leased_at + 2.6 - time.time()))  # the lease passes
    response, log = quietly(delivery(message_id), Context())
    assert response["statusCode"] == 200 and log["dedup"] == "taken_over"
    response, log = quietly(delivery(message_id), Context())
    assert response["statusCode"] == 200 and log["dedup"] == "duplicate"
    recorded = [(what, mid) for what, mid, _ in dedup_handler.effects(effects_file)]
    assert recorded == [("start", message_id), ("start", message_id), ("effect", message_id)]


@pytest.mark.parametrize("name", ["dynalite", "moto"])
def test_the_store_stopped_mid_run(name, monkeypatch):
    """The peer is killed while handle runs: the answer is handle's (its effect happened),
    the failure is logged; every later delivery is 503 without calling handle."""
    effects = []
    with peer(name) as store:
        for variable, value in {**CONFIG, "AWS_ENDPOINT_URL": store.endpoint}.items():
            monkeypatch.setenv(variable, value)
        monkeypatch.delenv("AWS_ENDPOINT_URL_DYNAMODB", raising=False)

        def handle(message):
            effects.append(message.message_id)
            if len(effects) == 2:
                os.killpg(store.peer_process.pid, signal.SIGKILL)
                store.peer_process.wait()
            return {}
        monkeypatch.setattr(lf, "handle", handle)
        assert quietly(delivery(new_id()), Context())[0]["statusCode"] == 200
        stopped = new_id()
        response, log = quietly(delivery(stopped), Context())
        assert response["statusCode"] == 200 and "completion not recorded" in log["reason"]
        for message_id in (stopped, new_id()):
            response, log = quietly(delivery(message_id), Context())
            assert response["statusCode"] == 503 and log["dedup"] == "store_error"
        assert len(effects) == 2


# --- The soak -------------------------------------------------------------------------------

class Soak:
    """QStash, simulated: every message is delivered until it gets a 2xx or a 489 (retries
    with fresh tokens, waiting Retry-After up to a cap), each attempt in a burst of concurrent
    copies; used tokens are replayed with forged message ids. handle fails at random."""

    def __init__(self, messages, seed=13):
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.messages = {new_id(): self.random.random() < 0.05 for _ in range(messages)}
        self.effects, self.refusals, self.answers = {}, {}, {}
        self.deliveries = self.replays = self.overran = 0
        self.used_events, self.forged = [], set()

    def handle(self, message):
        message_id = message.message_id
        with self.lock:
            fail = self.random.random() < 0.15
        if fail:
            raise RuntimeError("transient failure")
        if self.messages.get(message_id):
            with self.lock:
                self.refusals[message_id] = self.refusals.get(message_id, 0) + 1
            raise lf.NonRetryableError("never valid")
        with self.lock:
            self.effects[message_id] = self.effects.get(message_id, 0) + 1
        return {"applied": message_id}

    def deliver(self, event, replayed=False):
        started = time.monotonic()
        response, _ = quietly(event, Context(remaining_ms=5000))
        with self.lock:
            self.deliveries += 1
            if time.monotonic() - started > 5.0:
                self.overran += 1  # Lambda would have stopped it; its lease was gone
            status = response["statusCode"]
            self.answers[status] = self.answers.get(status, 0) + 1
            if status != 503 and not replayed:
                # the token reached the table: from now on it is used. (After a 503 it may
                # not have: its first use, whatever message id it carries, is trusted.)
                self.used_events.append(event)
        return status, response

    def run_message(self, pool, message_id):
        """Deliveries of one message until QStash would stop: each attempt a burst of
        concurrent copies (fresh tokens), the next after the shortest Retry-After (capped:
        this is a simulation, and earlier retries only make it harder)."""
        for attempt in range(60):
            with self.lock:
                copies = self.random.randint(1, 14)
            events = [delivery(message_id) for _ in range(copies)]
            answers = list(pool.map(self.deliver, events))
            if any(200 <= status < 300 or status == 489 for status, _ in answers):
                return True
            waits = [int(response["headers"]["Retry-After"]) for _, response in answers
                     if "Retry-After" in response["headers"]]
            time.sleep(min(min(waits or [0]), 0.2))
        return False

    def replay_some(self, pool, count):
        with self.lock:
            chosen = [self.random.choice(self.used_events) for _ in range(count)]
            forged_ids = [self.random.choice([new_id(), self.random.choice(list(self.messages))])
                          for _ in range(count)]
        for forged in forged_ids:
            if forged not in self.messages:
                self.forged.add(forged)
        events = [replay(event, forged) for event, forged in zip(chosen, forged_ids)]
        list(pool.map(lambda event: self.deliver(event, replayed=True), events))
        with self.lock:
            self.replays += count


def test_soak_exactly_once_under_duplicates_failures_and_faults(dynalite_store, monkeypatch):
    store = dynalite_store
    faulty = dynamo.Proxy(store.endpoint, fault_rate=0.02, seed=21)
    for name, value in {**CONFIG, "AWS_ENDPOINT_URL": faulty.endpoint}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL_DYNAMODB", raising=False)
    soak = Soak(messages=1000)
    monkeypatch.setattr(lf, "handle", soak.handle)
    started = time.monotonic()
    try:
        with concurrent.futures.ThreadPoolExecutor(8) as deliveries, \
                concurrent.futures.ThreadPoolExecutor(8) as messages:
            done = list(messages.map(lambda m: soak.run_message(deliveries, m), soak.messages))
            while soak.deliveries < 10_000 or soak.replays < 500:
                soak.replay_some(deliveries, 250)
    finally:
        faulty.close()
    failed_for_good = [m for m, permanent in soak.messages.items() if permanent]
    print("\nsoak: %d deliveries (%d replays) of %d messages in %.0f s; answers %s; "
          "store faults injected %s over %d requests; handle failures: permanent on %d messages"
          % (soak.deliveries, soak.replays, len(soak.messages), time.monotonic() - started,
             dict(sorted(soak.answers.items())), faulty.faults, faulty.total(),
             len(failed_for_good)))
    assert all(done)
    assert soak.overran == 0
    for message_id, permanent in soak.messages.items():
        if permanent:
            assert soak.refusals.get(message_id) == 1 and message_id not in soak.effects
        else:
            assert soak.effects.get(message_id) == 1, message_id
    assert soak.deliveries >= 10_000 and len(soak.messages) >= 1000
    assert all(faulty.faults.values()) and soak.answers.get(503)
    assert not soak.forged & (set(soak.effects) | set(soak.refusals))  # replays never ran it
    filed = {record["id"] for record in dynamo.items(store.endpoint, "qstash:message:")}
    for forged in soak.forged:  # nor filed anything under the ids they claimed
        assert not any(key.startswith("qstash:message:" + forged + ":") for key in filed)
