"""dask mode on a real Dask distributed cluster: LocalCluster(processes=True, n_workers=2) on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dask
import pytest
from distributed import Client, LocalCluster

from document_it.config import LLMKind, Mode, Settings
from document_it.core.dispatcher import PLANS
from document_it.errors import ConfigError
from document_it.run.pipeline import run
from document_it.testing.docsite import write_docsite
from document_it.testing.llm_sim import SimServer
from document_it.testing.site import SiteServer

from _corpus import PAGES, SYNTHESES

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(240)
# a dead worker's semaphore leases come back after the lease timeout: short here, so tests don't wait 30 s
_SHORT_LEASES = {"distributed.scheduler.locks.lease-timeout": "2s",
                 "distributed.scheduler.locks.lease-validation-interval": "0.2s"}


def _cluster(**config: object) -> tuple[LocalCluster, Client]:
    with dask.config.set(config):
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                               silence_logs=40)
    return cluster, Client(cluster, set_as_default=False)


@pytest.fixture(scope="module")
def cluster():
    local, client = _cluster()
    yield local
    client.close()
    local.close()


@pytest.fixture(scope="module")
def site(corpus_with_gone):
    return corpus_with_gone


@pytest.fixture(scope="module")
def sim():
    with SimServer(latency_ms=30, ms_per_token=0.05, max_seconds=300) as server:
        yield server


def _settings(tmp_path: Path, source: str, mode: Mode, out: str, sim: SimServer | None = None, **extra) -> Settings:
    llm = dict(llm=LLMKind.SIMULATE, llm_base_url=sim.base_url) if sim else dict(llm=LLMKind.EXTRACTIVE)
    return Settings(source=source, allow_private=True, state_dir=tmp_path / "state", mode=mode, quiet=True,
                    output_dir=tmp_path / out, analysis_workers=2, **{**llm, **extra})


def _lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def _comparable(out: Path) -> list[tuple]:
    return sorted((r["url"], r["status"], r["error"], json.dumps(r["analysis"], sort_keys=True))
                  for r in _lines(out))


def test_the_plan_parses_on_the_cluster_and_analyses_on_the_driver_loop():
    plan = PLANS[Mode.DASK]
    assert (plan.fetch.value, plan.parse.value, plan.analyze.value) == ("threads", "cluster", "async")


def test_dask_gives_the_same_analyses_as_hybrid_with_and_without_distributed_llm(tmp_path, site, sim, cluster):
    source = site.url("llms.txt")
    hybrid = run(_settings(tmp_path, source, Mode.HYBRID, "hybrid", sim, no_cache=True))
    dask_run = run(_settings(tmp_path, source, Mode.DASK, "dask", sim, no_cache=True,
                             dask_scheduler=cluster.scheduler_address))
    remote = run(_settings(tmp_path, source, Mode.DASK, "remote", sim, no_cache=True, distributed_llm=True,
                           dask_scheduler=cluster.scheduler_address))
    expected = {"total": len(PAGES) + 1, "completed": len(PAGES), "failed": 1, "not_reached": 0}
    assert hybrid["documents"] == dask_run["documents"] == remote["documents"] == expected
    assert _comparable(tmp_path / "dask") == _comparable(tmp_path / "hybrid")
    assert _comparable(tmp_path / "remote") == _comparable(tmp_path / "hybrid")
    # parsing ran on the workers; the LLM work only with --distributed-llm
    info = dask_run["cluster"]
    assert info["address"] == cluster.scheduler_address and info["workers"] == 2 and info["threads"] == 2
    assert not info["local"] and info["tasks"] == {"parse": len(PAGES)}
    assert info["seconds"]["workers"]["parse"] > 0 and info["seconds"]["driver"]["analyze"] > 0
    assert remote["cluster"]["tasks"] == {"parse": len(PAGES), "analyze": len(PAGES)}
    assert remote["llm"]["prompts"] == hybrid["llm"]["prompts"]  # every worker's requests are counted
    assert hybrid["cluster"] is None


def test_the_offline_analyser_runs_on_the_workers(tmp_path, site, cluster):
    source = site.url("llms.txt")
    run(_settings(tmp_path, source, Mode.HYBRID, "hybrid"))
    summary = run(_settings(tmp_path, source, Mode.DASK, "dask", dask_scheduler=cluster.scheduler_address))
    # one offline answer per page (every analysis at once, as one LLM request would) and one per topic of 2+ pages
    assert summary["cluster"]["tasks"]["analyze"] == len(PAGES) + SYNTHESES
    assert _comparable(tmp_path / "dask") == _comparable(tmp_path / "hybrid")


def test_distributed_llm_keeps_the_cluster_wide_cap_at_the_server(tmp_path, cluster):
    write_docsite(tmp_path / "site", pages=16)
    with SiteServer(tmp_path / "site", max_seconds=120) as site, \
            SimServer(latency_ms=80, ms_per_token=0.2, max_seconds=120) as sim:
        (tmp_path / "urls.txt").write_text("".join(
            site.url(f"docs/part-{i % 4}/page-{i:03d}.html") + "\n" for i in range(16)))
        summary = run(_settings(tmp_path, str(tmp_path / "urls.txt"), Mode.DASK, "out", sim, no_cache=True,
                                distributed_llm=True, max_concurrency=3, max_workers=2,
                                dask_scheduler=cluster.scheduler_address))
        stats = sim.stats()
    assert summary["documents"]["completed"] == 16
    assert stats["requests"] >= 16 and stats["max_in_flight"] <= 3  # each worker alone would allow 3
    # back-pressure: never more pages out on the cluster than the pipeline keeps in flight
    assert summary["cluster"]["max_pending"]["analyze"] <= PLANS[Mode.DASK].docs_in_flight(
        Settings(max_concurrency=3, max_workers=2))


def test_cached_pages_never_travel_and_nightly_runs_send_only_what_changed(tmp_path, site, sim, cluster):
    flags = dict(distributed_llm=True, dask_scheduler=cluster.scheduler_address, incremental=True)
    first = run(_settings(tmp_path, site.url("llms.txt"), Mode.DASK, "first", sim, **flags))
    assert first["cluster"]["tasks"]["analyze"] == len(PAGES)
    sim.reset_stats()
    again = run(_settings(tmp_path, site.url("llms.txt"), Mode.DASK, "again", sim, **flags))
    assert again["documents"]["completed"] == len(PAGES)
    assert "analyze" not in again["cluster"]["tasks"] and sim.stats()["requests"] == 0
    # the cache written by the driver from the workers' replies answers the same pages in hybrid mode too
    sim.reset_stats()
    cached = run(_settings(tmp_path, site.url("llms.txt"), Mode.HYBRID, "cached", sim))
    assert cached["documents"]["completed"] == len(PAGES) and sim.stats()["requests"] == 0


def test_a_worker_killed_mid_run_loses_no_page_and_duplicates_none(tmp_path):
    pages = 24
    write_docsite(tmp_path / "site", pages=pages)
    local, client = _cluster(**_SHORT_LEASES)
    try:
        victim = next(iter(client.run(os.getpid).values()))
        with SiteServer(tmp_path / "site", max_seconds=180) as site, \
                SimServer(latency_ms=300, ms_per_token=0.5, max_seconds=180) as sim:
            urls = [site.url(f"docs/part-{i % 4}/page-{i:03d}.html") for i in range(pages)]
            (tmp_path / "urls.txt").write_text("\n".join(urls) + "\n")
            results = tmp_path / "out" / "results.jsonl"
            killed = threading.Event()

            def kill_when_under_way() -> None:
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    if results.exists() and len(results.read_text().splitlines()) >= 3:
                        os.kill(victim, signal.SIGKILL)  # a worker process this test's cluster started
                        killed.set()
                        return
                    time.sleep(0.05)

            watcher = threading.Thread(target=kill_when_under_way, daemon=True)
            watcher.start()
            summary = run(_settings(tmp_path, str(tmp_path / "urls.txt"), Mode.DASK, "out", sim, no_cache=True,
                                    distributed_llm=True, max_concurrency=6, batch_size=1,
                                    dask_scheduler=local.scheduler_address))
            watcher.join(5)
            sent = sim.stats()["requests"]
        assert killed.is_set(), "the run ended before a worker could be killed"
        lines = _lines(tmp_path / "out")
        assert sorted(r["url"] for r in lines) == sorted(urls)  # every page once
        assert all(r["status"] == "completed" or r["error"] for r in lines)
        assert summary["documents"]["total"] == pages
        assert summary["documents"]["completed"] >= pages - 2  # a task on the dead worker is simply sent again
        assert summary["cluster"]["workers_lost"] == 1 and summary["cluster"]["workers_at_end"] == 2  # restarted
        assert sent >= summary["llm"]["requests"]  # the dead worker's requests are not in run.json's count
    finally:
        client.close()
        local.close()


def test_without_a_scheduler_the_run_starts_and_stops_its_own_local_cluster(tmp_path, site):
    summary = run(_settings(tmp_path, site.url("llms.txt"), Mode.DASK, "own"))
    info = summary["cluster"]
    assert info["local"] and info["workers"] == 2 and summary["documents"]["completed"] == len(PAGES)


def test_an_unreachable_scheduler_is_one_line_and_exit_2(tmp_path):
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = subprocess.run([sys.executable, str(ROOT / "main.py"), "--parallelism-mode", "dask", "--dask-scheduler",
                           f"tcp://127.0.0.1:{port}", "--dask-timeout", "2", "--output-dir", str(tmp_path / "o"),
                           "--state-dir", str(tmp_path / "s")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("document-it: error: cannot reach the Dask scheduler at")
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("change, fragment", [
    (dict(mode=Mode.HYBRID, distributed_llm=True), "--distributed-llm needs --parallelism-mode dask"),
    (dict(mode=Mode.DASK, dask_scheduler="http://10.0.0.5:8786"), "must be a scheduler address"),
    (dict(mode=Mode.DASK, dask_scheduler="tcp://scheduler"), "must be a scheduler address"),
    (dict(mode=Mode.DASK, dask_timeout=0), "--dask-timeout must be a positive number"),
])
def test_dask_settings_are_checked(change, fragment):
    with pytest.raises(ConfigError, match=fragment):
        Settings(**change)


def test_scheduler_flag_outside_dask_mode_is_refused_but_the_environment_is_ignored():
    from document_it.cli import build_parser, settings_from_args

    env = {"DASK_SCHEDULER_ADDRESS": "tcp://127.0.0.1:8786"}
    args = build_parser(env).parse_args([])
    args.flags_given = set()
    assert settings_from_args(args, env).dask_scheduler is None  # hybrid: the ambient address is not ours
    args = build_parser(env).parse_args(["--parallelism-mode", "dask"])
    args.flags_given = {"--parallelism-mode"}
    assert settings_from_args(args, env).dask_scheduler == "tcp://127.0.0.1:8786"
    args = build_parser({}).parse_args(["--dask-scheduler", "tcp://127.0.0.1:8786"])
    args.flags_given = {"--dask-scheduler"}
    with pytest.raises(ConfigError, match="--dask-scheduler is for --parallelism-mode dask"):
        settings_from_args(args, {})


def test_workers_start_from_what_the_drivers_state_dir_learned(tmp_path, site, cluster):
    from document_it.analysis.negotiate import STORE_NAME
    from document_it.analysis.providers import _server_key
    from document_it.core.state_file import read_state, write_state

    errors = {}
    with SimServer(latency_ms=5, ms_per_token=0, no_json_schema=True, max_seconds=120) as sim:
        for mode, extra in ((Mode.HYBRID, {}), (Mode.DASK, dict(distributed_llm=True,
                                                                 dask_scheduler=cluster.scheduler_address))):
            settings = _settings(tmp_path / mode.value, site.url("llms.txt"), mode, "out", sim, no_cache=True, **extra)
            store = settings.state_dir / STORE_NAME
            learned = {_server_key(sim.base_url, settings.model): "function_calling"}
            write_state(store, learned)  # an earlier run found this server refuses json_schema
            sim.reset_stats()
            assert run(settings)["documents"]["completed"] == len(PAGES)
            errors[mode] = sim.stats()["errors"]
            assert read_state(store) == learned
    assert errors[Mode.DASK] == errors[Mode.HYBRID]  # no worker asked with json_schema first


def test_the_other_modes_never_import_dask(tmp_path):
    code = ("import sys; from document_it.cli import main; "
            "code = main(['--parallelism-mode', 'hybrid', '--limit', '2', '--quiet', '--output-dir', sys.argv[1]]); "
            "print(code, 'distributed' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "out")], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "DOCUMENT_IT_STATE_DIR": str(tmp_path / "s")})
    assert done.stdout.splitlines()[-1].split() == ["0", "False"], done.stderr


def test_a_cluster_left_without_workers_fails_the_pages_out_on_it_and_the_run_ends(tmp_path):
    pages = 16
    write_docsite(tmp_path / "site", pages=pages)
    local, client = _cluster(**_SHORT_LEASES)  # the topic syntheses wait for the lost workers' leases
    try:
        with SiteServer(tmp_path / "site", max_seconds=120) as site, \
                SimServer(latency_ms=300, ms_per_token=0.5, max_seconds=120) as sim:
            urls = [site.url(f"docs/part-{i % 4}/page-{i:03d}.html") for i in range(pages)]
            (tmp_path / "urls.txt").write_text("\n".join(urls) + "\n")
            results = tmp_path / "out" / "results.jsonl"

            def retire_when_under_way() -> None:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    if results.exists() and len(results.read_text().splitlines()) >= 2:
                        local.scale(0)  # every worker of this test's own cluster leaves
                        return
                    time.sleep(0.05)

            watcher = threading.Thread(target=retire_when_under_way, daemon=True)
            watcher.start()
            summary = run(_settings(tmp_path, str(tmp_path / "urls.txt"), Mode.DASK, "out", sim, no_cache=True,
                                    distributed_llm=True, max_concurrency=4, batch_size=1, dask_timeout=2,
                                    dask_scheduler=local.scheduler_address))
            watcher.join(5)
        lines = _lines(tmp_path / "out")
        assert sorted(r["url"] for r in lines) == sorted(urls)
        failed = [r for r in lines if r["status"] == "failed"]
        assert failed and all("Dask cluster" in r["error"] for r in failed), [r["error"] for r in failed]
        assert summary["cluster"]["workers_at_end"] == 0
    finally:
        client.close()
        local.close()
