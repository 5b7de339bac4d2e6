"""Bare Locust users for the overhead benchmark: Locust's own clients, no Hammerlab pipeline.

Closed loop, paced by `constant_throughput`, so the offered rate matches the pipeline runs.
"""

import os

from locust import FastHttpUser, HttpUser, constant_throughput, task

RATE_PER_USER = float(os.environ.get("BENCH_RATE_PER_USER", "20"))


class BareFastHttpUser(FastHttpUser):
    wait_time = constant_throughput(RATE_PER_USER)

    @task
    def ping(self) -> None:
        self.client.get("/ping")


class BareHttpUser(HttpUser):
    wait_time = constant_throughput(RATE_PER_USER)

    @task
    def ping(self) -> None:
        self.client.get("/ping")
