"""The command line as a user meets it: help, one-line errors, exit codes, the offline default."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from document_it.cli import build_parser, main, settings_from_args
from document_it.config import LLMKind, Mode
from document_it.core.cache import Memo
from document_it.testing.llm_sim import SimServer
from document_it.testing.site import SiteServer

from _corpus import write_corpus

ROOT = Path(__file__).resolve().parent.parent
FLAGS = ["--source", "--output-dir", "--state-dir", "--parallelism-mode", "--max-workers", "--analysis-workers",
         "--max-concurrency", "--batch-size", "--limit", "--llm", "--llm-base-url", "--model", "--quiet",
         "--version", "--structured-output"]


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_help_lists_every_flag_with_defaults_and_examples(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for flag in FLAGS:
        assert flag in out
    assert "(default: hybrid)" in out and "(default: 20)" in out and "(default: 8)" in out
    assert out.count("python main.py") >= 2 and "default: the bundled sample corpus" in out


@pytest.mark.parametrize("argv, fragment", [
    (["--parallelism-mode", "fast"], "invalid choice: 'fast'"),
    (["--max-concurrency", "0"], "--max-concurrency must be at least 1"),
    (["--source", "/definitely/not/here/llms.txt"], "source not found"),
    (["--llm", "openai"], "needs OPENAI_API_KEY or --llm-base-url"),
    (["--limit", "many"], "invalid int value: 'many'"),
    (["--batch-size", "-1"], "--batch-size must be 0"),
    (["--source", ""], "--source is empty"),
    (["--llm-base-url", "not-a-url"], "--llm-base-url must be an http(s) URL"),
    (["--request-timeout", "nan"], "--request-timeout must be a positive number"),
    (["--llm-base-url", "http://127.0.0.1:1/v1"], "cannot reach the LLM at 127.0.0.1:1: connection refused"),
    (["--context-tokens", "lots"], "--context-tokens must be a whole number (got 'lots'"),
    (["--context-tokens", "100"], "--context-tokens must be at least 1024 (got 100)"),
])
def test_user_mistakes_are_one_line_and_exit_2(argv, fragment, capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(SystemExit) if argv[0] in ("--parallelism-mode", "--limit") else _no_raise() as done:
        code = main([*argv, "--output-dir", str(tmp_path / "out"), "--quiet", "--limit", "2"]
                    if argv[0] != "--limit" else [*argv, "--output-dir", str(tmp_path / "out"), "--quiet"])
    code = done.value.code if done else code
    assert code == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith("document-it: error:") and fragment in line


class _no_raise:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def test_output_dir_that_is_a_file_is_refused_up_front(tmp_path, capsys):
    (tmp_path / "taken").write_text("x")
    assert main(["--output-dir", str(tmp_path / "taken"), "--quiet"]) == 2
    assert "is a file, not a folder" in _one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize("name, value, fragment", [
    ("DOCUMENT_IT_MAX_CONCURRENCY", "abc", "invalid int value: 'abc' (from DOCUMENT_IT_MAX_CONCURRENCY)"),
    ("DOCUMENT_IT_PARALLELISM_MODE", "fast", "got 'fast' from DOCUMENT_IT_PARALLELISM_MODE"),
    ("DOCUMENT_IT_QUIET", "maybe", "DOCUMENT_IT_QUIET must be one of"),
])
def test_bad_environment_values_name_the_variable(name, value, fragment, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), name: value}
    done = subprocess.run([sys.executable, str(ROOT / "main.py")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and fragment in _one_error_line(done.stderr)


def test_environment_supplies_defaults_and_flags_win():
    env = {"DOCUMENT_IT_MAX_CONCURRENCY": "7", "DOCUMENT_IT_PARALLELISM_MODE": "async",
           "OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "OPENAI_MODEL": "local-model"}
    args = build_parser(env).parse_args(["--parallelism-mode", "sync"])
    settings = settings_from_args(args, env)
    assert settings.max_concurrency == 7 and settings.mode is Mode.SYNC
    assert settings.llm is LLMKind.OPENAI and settings.model == "local-model"


def test_auto_picks_openai_with_a_key_and_extractive_without():
    with_key = settings_from_args(build_parser({}).parse_args([]), {"OPENAI_API_KEY": "sk-abcdefgh"})
    without = settings_from_args(build_parser({}).parse_args([]), {})
    assert with_key.llm is LLMKind.OPENAI and without.llm is LLMKind.EXTRACTIVE
    assert "sk-abcdefgh" not in repr(with_key)


def test_default_run_on_the_bundled_sample(tmp_path):
    """The README's first command, minus the install: offline, exit 0, three outputs."""
    done = subprocess.run([sys.executable, str(ROOT / "main.py"), "--quiet"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    out = tmp_path / "output"
    run = json.loads((out / "run.json").read_text())
    assert run["resources"]["peak_rss_mb"] > 0 and run["resources"]["peak_processes"] >= 1
    assert run["documents"]["total"] >= 30 and run["documents"]["failed"] == 0
    assert run["provider"] == "extractive" and run["mode"] == "hybrid"
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == run["documents"]["total"]
    assert "extractive (offline, no LLM)" in (out / "report.md").read_text()
    assert "38 pages: 38 completed" in done.stdout or "completed, 0 failed" in done.stdout


def test_some_pages_failing_exits_3_and_lists_them(tmp_path, capsys):
    root = tmp_path / "site"
    write_corpus(root, extra_links=["- [Gone](pages/gone.md)"])
    with SiteServer(root, max_seconds=60) as site:
        code = main(["--source", site.url("llms.txt"), "--output-dir", str(tmp_path / "out"), "--quiet",
                     "--llm", "extractive"])
    assert code == 3
    out = capsys.readouterr().out
    assert "1 failed" in out and "failed: " + site.url("pages/gone.md") in out


def test_rejected_key_stops_the_run_with_one_line_and_never_shows_the_key(tmp_path, capsys, monkeypatch):
    key = "sk-live-do-not-print-0123456789"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    root = tmp_path / "site"
    write_corpus(root)
    with SiteServer(root, max_seconds=60) as site, SimServer(latency_ms=1, api_key="sk-the-right-one") as sim:
        code = main(["--source", site.url("llms.txt"), "--output-dir", str(tmp_path / "out"), "--quiet",
                     "--llm-base-url", sim.base_url, "--parallelism-mode", "async"])
    err = capsys.readouterr().err
    assert code == 2
    assert "API key rejected by 127.0.0.1" in _one_error_line(err)
    written = "".join(p.read_text() for p in (tmp_path / "out").glob("*") if p.is_file())
    assert key not in err and key not in written


def _cache_with(state: Path, entries: int) -> None:
    memo = Memo(state / "cache")
    for number in range(entries):
        memo.set("llm", f"key-{number}", {"answer": number})
    memo.close()


@pytest.mark.parametrize("argv", [
    ["--state-dir", "{state}", "cache", "stats"],
    ["cache", "stats", "--state-dir", "{state}"],
    ["cache", "--state-dir={state}", "stats"],
])
def test_cache_stats_takes_the_state_dir_before_or_after_the_word(argv, tmp_path, capsys):
    state = tmp_path / "elsewhere"
    _cache_with(state, 2)
    assert main([arg.format(state=state) for arg in argv]) == 0
    assert capsys.readouterr().out.startswith(f"{state / 'cache'}: 2 entries")


@pytest.mark.parametrize("before", [True, False])
def test_cache_clear_takes_the_state_dir_before_or_after_the_word(before, tmp_path, capsys):
    state = tmp_path / "elsewhere"
    _cache_with(state, 3)
    flag = ["--state-dir", str(state)]
    assert main([*flag, "cache", "clear"] if before else ["cache", "clear", *flag]) == 0
    assert f"removed 3 entries from {state / 'cache'}" in capsys.readouterr().out
    assert Memo(state / "cache").stats()["entries"] == 0


def test_cache_reads_the_state_dir_from_the_environment(tmp_path, capsys, monkeypatch):
    state = tmp_path / "from-env"
    _cache_with(state, 1)
    monkeypatch.setenv("DOCUMENT_IT_STATE_DIR", str(state))
    assert main(["cache", "stats"]) == 0
    assert "1 entries" in capsys.readouterr().out


@pytest.mark.parametrize("argv, fragment", [
    (["cache", "purge"], "unknown cache action 'purge'"),
    (["cache"], "required"),
    (["--quiet", "cache", "stats"], "--quiet is for a run; 'cache' takes only --state-dir"),
    (["cache", "stats", "--limit", "3"], "--limit is for a run"),
])
def test_cache_mistakes_are_one_line_and_exit_2(argv, fragment, capsys):
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith("document-it: error:") and fragment in line


_LIGHT_CHECK = """
import sys
from document_it.cli import main
code = main(sys.argv[1:])
heavy = sorted({name.split(".")[0] for name in sys.modules} & {"langchain_core", "langchain_openai", "langgraph",
                                                             "openai", "dask", "distributed", "matplotlib"})
print(code, heavy)
"""


@pytest.mark.parametrize("source", ["missing", "blob.bin", "no-pages", "/dev/null"])
def test_a_bad_source_is_refused_before_the_llm_stack_is_imported(source, tmp_path):
    (tmp_path / "blob.bin").write_bytes(bytes(range(256)) * 8)
    (tmp_path / "no-pages").mkdir()
    (tmp_path / "no-pages" / "notes.txt").write_text("not a page")
    done = subprocess.run([sys.executable, "-c", _LIGHT_CHECK, "--source", str(tmp_path / source),
                           "--output-dir", str(tmp_path / "out"), "--quiet"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.stdout.split("\n")[0] == "2 []", done.stdout + done.stderr
    assert _one_error_line(done.stderr).startswith("document-it: error:")
