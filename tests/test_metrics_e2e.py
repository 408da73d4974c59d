"""docs/metrics.md, "Processes": metrics add up across real processes — gunicorn with two workers
(multiprocess mode, directory emptied at master start) and a Celery worker with the prefork pool
serving its task metrics on ``WORKER_METRICS_PORT`` behind ``METRICS_TOKEN``."""

from __future__ import annotations

import json
import re
import shutil
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from celery import Celery
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from .support.processes import ManagedProcess, free_port, port_open, wait_until

pytestmark = pytest.mark.e2e

CC_ID, CC_SECRET = "metrics-service", "metrics-service-secret-0123456789abcdef-0123"
METRICS_TOKEN = "metrics-token-0123456789abcdef-0123456789"
ISSUED = "scitoken_issuer_tokens_issued_total"
REFUSED = "scitoken_issuer_token_refusals_total"
CC = {"grant_type": "client_credentials"}


def samples(text: str) -> dict[tuple, float]:
    """(sample name, sorted labels) -> value of a Prometheus text exposition."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def issued_by_worker(directory: Path, scratch: Path) -> dict[int, float]:
    """Client-credentials tokens counted in each process's own value file (``counter_<pid>.db``)."""
    counts = {}
    for path in directory.glob("counter_*.db"):
        pid = int(re.fullmatch(r"counter_(\d+)\.db", path.name).group(1))
        alone = scratch / str(pid)
        alone.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, alone / path.name)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(alone))
        counts[pid] = registry.get_sample_value(ISSUED, {"grant_type": "client_credentials"}) or 0.0
    return counts


def test_two_gunicorn_workers_add_up(issuer_stack, tmp_path):
    """Tokens served by both gunicorn workers (each worker's own file shows some) are the sum
    ``/metrics`` reports, whichever worker answers the scrape; a restart starts from zero."""
    directory = tmp_path / "prom"
    stack = issuer_stack(worker=False, PROMETHEUS_MULTIPROC_DIR=str(directory), STATIC_CLIENTS=json.dumps([
        {"client_id": CC_ID, "client_secret": CC_SECRET, "grant_types": ["client_credentials"],
         "scope": "compute.read", "client_name": "metrics service"}]))

    def token(_=None) -> int:
        return requests.post(f"{stack.url}/auth/token", data=CC, auth=(CC_ID, CC_SECRET), timeout=30).status_code

    issued = 0
    with ThreadPoolExecutor(8) as pool:
        while issued < 400:
            assert set(pool.map(token, range(16))) == {200}
            issued += 16
            per_worker = issued_by_worker(directory, tmp_path / "scratch")
            if len([n for n in per_worker.values() if n > 0]) >= 2:
                break
    assert len([n for n in per_worker.values() if n > 0]) == 2, per_worker  # both workers served tokens
    assert sum(per_worker.values()) == issued
    refused = requests.post(f"{stack.url}/auth/token", data={**CC, "scope": "compute.cancel"},
                            auth=(CC_ID, CC_SECRET), timeout=30)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_scope"

    for _ in range(4):  # several scrapes, answered by either worker: always the sum
        scraped = samples(requests.get(f"{stack.url}/metrics", timeout=30).text)
        assert scraped[(ISSUED, (("grant_type", "client_credentials"),))] == issued
        assert scraped[(REFUSED, (("grant_type", "client_credentials"), ("reason", "invalid_scope")))] == 1
    assert not any(name.startswith("process_") for name, _ in scraped)  # no per-process noise

    stack.kill_web()
    stack.start_web()
    scraped = samples(requests.get(f"{stack.url}/metrics", timeout=30).text)
    assert (ISSUED, (("grant_type", "client_credentials"),)) not in scraped  # emptied at master start


def test_celery_prefork_worker_serves_task_metrics(issuer_stack, tmp_path):
    """Tasks run in the prefork pool's child processes; the worker's main process serves their
    sum on WORKER_METRICS_PORT, only with the metrics token."""
    port = free_port()
    stack = issuer_stack(worker=False, WORKER_METRICS_PORT=port, METRICS_TOKEN=METRICS_TOKEN,
                         PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "web-prom"))
    worker = ManagedProcess(f"prefork-{uuid.uuid4().hex[:6]}", [
        sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "--pool=prefork", "--concurrency=2",
        "--loglevel=INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"], tmp_path, env=stack.env)
    worker.start()
    try:
        worker.wait_for_port(port, timeout=60)
        url = f"http://127.0.0.1:{port}/metrics"
        assert requests.get(url, timeout=10).status_code == 401
        with Celery(broker=stack.env["REDIS_URL"]) as sender:
            for _ in range(6):
                sender.send_task("workers.tasks.cleanup_expired")
        key = ("scitoken_issuer_celery_tasks_total", (("outcome", "success"), ("task", "cleanup_expired")))
        auth = {"Authorization": f"Bearer {METRICS_TOKEN}"}
        wait_until(lambda: samples(requests.get(url, headers=auth, timeout=10).text).get(key) == 6, 60,
                   "six cleanup tasks counted on the worker's metrics port")
        scraped = samples(requests.get(url, headers=auth, timeout=10).text)
        assert scraped[("scitoken_issuer_celery_task_duration_seconds_count", (("task", "cleanup_expired"),))] == 6
        web = samples(requests.get(f"{stack.url}/metrics", headers=auth, timeout=10).text)
        assert key not in web  # the worker's directory is its own, not the web's
        assert not list((tmp_path / "web-prom").glob("*_%d.db" % worker.proc.pid))
    finally:
        worker.stop()
    assert not port_open(port)
