"""Command line: flags and environment → Settings → pipeline.run(); exit codes and one-line errors."""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import threading
from pathlib import Path
from typing import Mapping, NoReturn, Sequence

from . import __version__
from .config import Fallback, LLMKind, Mode, Settings, StructuredMethod
from .errors import ConfigError, DocumentItError, Interrupted, OutputError
from .logs import LOG_FORMATS, setup_logging
from .models import PAGE_TASKS
from .core.state_file import private_dir
from .redact import printable, redact
from .settings_from_flags import env_name as _env_name, settings_from_args, switch as _switch

__all__ = ["main", "run_command", "build_parser", "settings_from_args"]

EXIT_OK, EXIT_USAGE, EXIT_SOME_FAILED, EXIT_IO = 0, 2, 3, 4

_EPILOG = """examples:
  python main.py                                   # bundled sample, offline extractive analyser
  python main.py --source https://docs.example.org/llms.txt --llm openai --parallelism-mode hybrid
  python main.py --llm simulate --parallelism-mode sync --limit 5
  python main.py --source https://docs.example.org/guide/ --max-depth 3 --incremental   # nightly crawl
  python main.py --resume                          # continue a killed run
  python main.py cache stats            # or: cache clear

environment: every flag also reads DOCUMENT_IT_<FLAG> (e.g. DOCUMENT_IT_MAX_CONCURRENCY=10);
OPENAI_API_KEY, OPENAI_BASE_URL and OPENAI_MODEL are honoured too. Flags win over the environment.
exit codes: 0 all pages completed, 3 some pages failed, 2 usage or configuration error,
4 a local file could not be written (disk full, read-only folder; what finished is kept),
130 interrupted by Ctrl-C, 143 stopped by SIGTERM (what finished is kept in the outputs;
with the job queue, --resume continues)."""

def build_parser(env: Mapping[str, str] = os.environ) -> argparse.ArgumentParser:
    """The argument parser; defaults come from the environment where it sets them."""
    p = _Parser(
        prog="document-it", description="Turn a documentation site into structured, per-page analysis "
        "and a Markdown report.", epilog=_EPILOG, formatter_class=_Formatter)

    def d(flag: str, default: object, *also: str) -> object:
        for name in (_env_name(flag), *also):
            if env.get(name):
                p.env_used[f"--{flag}"] = name
                return env[name]
        return default

    p.add_argument("--source", default=d("source", None),
                   help="llms.txt (URL or path), sitemap.xml (or .xml.gz), text file of URLs, a folder of .html/.md "
                        "files, or a page URL to crawl from; default: the bundled sample corpus")
    p.add_argument("--output-dir", default=d("output-dir", "output"), help="where results are written")
    p.add_argument("--state-dir", default=d("state-dir", ".document_it"),
                   help="where the cache (LLM answers, parses) and the job queue (jobs.sqlite: page states for "
                        "resume and nightly runs) live")
    p.add_argument("--parallelism-mode", choices=[m.value for m in Mode], default=d("parallelism-mode", "hybrid"),
                   help="where each stage runs (see README, 'Parallelism modes')")
    p.add_argument("--max-workers", type=int, default=d("max-workers", 8), help="download threads")
    p.add_argument("--analysis-workers", type=int, default=d("analysis-workers", os.cpu_count() or 2),
                   help="worker processes for parsing and process-mode analysis")
    p.add_argument("--max-concurrency", type=int, default=d("max-concurrency", 20),
                   help="most LLM requests in flight at once")
    p.add_argument("--batch-size", type=int, default=d("batch-size", 0),
                   help="prompts per batched request: 0 auto (up to 8, by token budget), 1 off, N at most N")
    p.add_argument("--batch-max-tokens", type=int, default=d("batch-max-tokens", 6000),
                   help="prompt tokens one batched request may carry")
    p.add_argument("--limit", type=int, default=d("limit", None), help="analyse at most N pages (default: all)")
    p.add_argument("--llm", choices=[k.value for k in LLMKind], default=d("llm", "auto"),
                   help="auto: openai when OPENAI_API_KEY or a base URL is set, else the offline extractive "
                        "analyser; simulate: start the built-in LLM simulator")
    p.add_argument("--llm-base-url", default=d("llm-base-url", None, "OPENAI_BASE_URL"),
                   help="any OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--model", default=d("model", None, "OPENAI_MODEL"),
                   help="model name (the root model: page analyses and syntheses); default: gpt-4o-mini, or "
                        "with --llm-base-url the first model the server lists if it has no gpt-4o-mini")
    p.add_argument("--sub-model", default=d("sub-model", None),
                   help="model for per-chunk notes on long pages (map-reduce); default: --model")
    p.add_argument("--extract-fields", default=d("extract-fields", None), metavar="NAMES",
                   help="comma-separated fields to read from every page, e.g. 'name,version,license' "
                        "(each chunk in parallel, the first value found wins; needs an LLM)")
    p.add_argument("--tasks", default=d("tasks", None), metavar="NAMES",
                   help="comma-separated analyses asked of every page, one prompt each (fewer cost less), from: "
                        f"{', '.join(task.value for task in PAGE_TASKS)}; default: all of them")
    p.add_argument("--chunk-tokens", type=int, default=d("chunk-tokens", 800),
                   help="chunk size in tokens; pages longer than one prompt's budget (3000 tokens, less in a "
                        "small context window) are read chunk by chunk, the notes merged by the root model")
    p.add_argument("--context-tokens", default=d("context-tokens", None), metavar="N",
                   help="the model's context window in tokens: no request is built larger (prompt + room for "
                        "the answer); default: what the server announces, else 8192, lowered when the server "
                        "refuses a request as too long")
    p.add_argument("--structured-output", choices=[m.value for m in StructuredMethod],
                   default=d("structured-output", "auto"),
                   help="how the model is asked for JSON; auto (default) tries json_schema, then function "
                        "calling, then json_mode, and remembers per server and model what worked")
    p.add_argument("--request-timeout", type=float, default=d("request-timeout", 60.0),
                   help="seconds per LLM request attempt")
    p.add_argument("--rpm", type=float, default=d("rpm", 0), help="requests per minute to pace at (0: none, "
                   "but a limit the server announces is adopted)")
    p.add_argument("--tpm", type=float, default=d("tpm", 0), help="tokens per minute to pace at (0: none)")
    p.add_argument("--retries", type=int, default=d("retries", 3),
                   help="retries per request on 429, 408, 409, 5xx, timeouts, dropped connections, malformed replies")
    p.add_argument("--max-wait", type=float, default=d("max-wait", 300.0),
                   help="seconds a page waits for an unavailable LLM (circuit open) before it fails")
    p.add_argument("--fallback", choices=[f.value for f in Fallback], default=d("fallback", "none"),
                   help="extractive: answer with the offline analyser when the LLM stays down (labelled)")
    p.add_argument("--max-cost", type=float, default=d("max-cost", None),
                   help="stop starting pages once the estimated cost reaches this many USD")
    p.add_argument("--max-tokens", type=int, default=d("max-tokens", None),
                   help="stop starting pages once this many tokens (in + out) are spent")
    p.add_argument("--price-in", type=float, default=d("price-in", None),
                   help="USD per 1M input tokens (default: the built-in table for known models)")
    p.add_argument("--price-out", type=float, default=d("price-out", None), help="USD per 1M output tokens")
    p.add_argument("--no-cache", action="store_true", default=None,
                   help="neither read nor write the cache in --state-dir")
    p.add_argument("--refresh", action="store_true", default=None,
                   help="recompute everything and overwrite what the cache holds")
    p.add_argument("--cache-size-limit", dest="cache_size_mb", metavar="MB", type=float,
                   default=d("cache-size-limit", 1024.0),
                   help="cache size limit in MB; the oldest entries are evicted past it")
    p.add_argument("--fetch-timeout", type=float, default=d("fetch-timeout", 30.0),
                   help="seconds a page download may stall (connect: 10 s)")
    p.add_argument("--max-page-mb", type=float, default=d("max-page-mb", 5.0),
                   help="pages larger than this are skipped with a clear error")
    p.add_argument("--parse-timeout", type=float, default=d("parse-timeout", 30.0),
                   help="seconds one page may take to parse; a page past it fails and the run goes on")
    p.add_argument("--parse-memory-mb", type=float, default=d("parse-memory-mb", 1024.0), metavar="MB",
                   help="memory a parse worker process (hybrid mode) may use beyond its resting size (0: no "
                        "cap); a page past it fails and the run goes on")
    crawl = p.add_argument_group(
        "crawling", "when --source is a web page (not an index), its site is crawled breadth-first:\n"
        "same host and folder as the start page, robots.txt honoured, sitemap.xml read when present")
    crawl.add_argument("--max-depth", type=int, default=d("max-depth", 2), help="links followed from the start page")
    crawl.add_argument("--max-pages", type=int, default=d("max-pages", 500), help="pages a crawl visits at most")
    crawl.add_argument("--allow-domain", action="append", default=_listed(d("allow-domain", None)), metavar="HOST",
                       help="also follow links to this host and its subdomains (repeatable)")
    crawl.add_argument("--include", action="append", default=_listed(d("include", None)), metavar="REGEX",
                       help="follow only URLs matching one of these (replaces the same-folder rule; repeatable)")
    crawl.add_argument("--exclude", action="append", default=_listed(d("exclude", None)), metavar="REGEX",
                       help="never follow URLs matching this (repeatable)")
    crawl.add_argument("--per-host", type=int, default=d("per-host", 4), help="downloads at once from one host")
    crawl.add_argument("--delay", type=float, default=d("delay", 0.0),
                       help="seconds between download starts on one host (robots.txt Crawl-delay wins if longer)")
    crawl.add_argument("--allow-private", action="store_true", default=None,
                       help="allow loopback, private and link-local addresses (refused by default, also after "
                            "redirects), e.g. to analyse a site served on 127.0.0.1")
    jobs = p.add_argument_group(
        "job queue and nightly runs", "the queue (--state-dir/jobs.sqlite) records every page's state, so a\n"
        "killed run can be resumed and a nightly run re-analyses only what changed (docs/nightly.md)")
    queue = jobs.add_mutually_exclusive_group()
    queue.add_argument("--enable-queue", dest="enable_queue", action="store_const", const=True, default=None,
                       help="use the job queue (on by default for crawls, --resume and --incremental)")
    queue.add_argument("--no-queue", dest="enable_queue", action="store_const", const=False,
                       help="never use the job queue")
    jobs.add_argument("--resume", action="store_true", default=None,
                      help="continue the last unfinished run in --state-dir (its source and options); finished "
                           "pages are kept, not analysed again")
    jobs.add_argument("--incremental", action="store_true", default=None,
                      help="re-analyse only new and changed pages (conditional GET, content hash); unchanged pages "
                           "keep their last analysis; writes changes.md")
    jobs.add_argument("--grace", type=float, default=d("grace", 5.0),
                      help="on Ctrl-C or SIGTERM, seconds pages under way get to finish (a second signal stops at once)")
    dask = p.add_argument_group(
        "dask mode", "--parallelism-mode dask: parsing and the offline analyser run on a Dask distributed\n"
        "cluster; the cache, job queue and outputs stay in this process (docs/distributed.md)")
    dask.add_argument("--dask-scheduler", default=d("dask-scheduler", None, "DASK_SCHEDULER_ADDRESS"),
                      help="a running scheduler, e.g. tcp://10.0.0.5:8786 (also DASK_SCHEDULER_ADDRESS); "
                           "default: start a local cluster of --analysis-workers processes")
    dask.add_argument("--dask-timeout", type=float, default=d("dask-timeout", 10.0),
                      help="seconds to reach --dask-scheduler before giving up (exit 2), and that a cluster "
                           "may be without any worker before the pages out on it fail")
    dask.add_argument("--distributed-llm", action="store_true", default=None,
                      help="send the LLM requests from the workers too; --max-concurrency then caps the whole "
                           "cluster (a Dask semaphore) and --rpm/--tpm are shared between the workers")
    p.add_argument("--sim-latency-ms", type=float, default=d("sim-latency-ms", 400.0),
                   help="reply latency of the simulator started by --llm simulate")
    p.add_argument("--quiet", action="store_true", default=None, help="no progress bar, only the final summary")
    p.add_argument("--verbose", action="store_true", default=None, help="log retries, pauses and skips to stderr")
    p.add_argument("--log-format", choices=LOG_FORMATS, default=d("log-format", "text"),
                   help="json: one JSON object per log line (time, level, logger, message, pid), for log collectors")
    p.add_argument("--version", action="version", version=f"document-it {__version__}")
    return p


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr (naming the variable it came from) and exit code 2."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.env_used: dict[str, str] = {}

    def error(self, message: str) -> NoReturn:
        found = re.search(r"argument (--[a-z-]+)", message)
        where = f" (from {self.env_used[found.group(1)]})" if found and found.group(1) in self.env_used else ""
        self.exit(EXIT_USAGE, f"document-it: error: {message}{where} (see --help)\n")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show defaults (unless there is none) and keep the examples' line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or isinstance(action.default, bool):
            return action.help or ""
        return super()._get_help_string(action)


def _explicit(parser: "_Parser", argv: Sequence[str], env: Mapping[str, str]) -> set[str]:
    """The Settings fields the user chose, on the command line or in the environment."""
    given = {arg.split("=", 1)[0] for arg in argv if arg.startswith("--")} | set(parser.env_used)
    given |= {option for action in parser._actions for option in action.option_strings
              if option.startswith("--") and env.get(_env_name(option[2:]), "").strip()}
    fields = {"parallelism_mode": "mode", "allow_domain": "allow_domains"}
    return {fields.get(action.dest, action.dest) for action in parser._actions
            if any(option in given for option in action.option_strings)}


def _listed(value: object) -> list[str] | None:
    """A repeatable flag's default from the environment: comma-separated values."""
    if not value:
        return None
    return [part.strip() for part in str(value).split(",") if part.strip()]


def _check_output_dir(path: Path) -> None:
    """Fail before any work when results could not be written."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--output-dir {path} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot use --output-dir {path}: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write to --output-dir {path}: permission denied")


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM outside the analysis loop (which handles it itself): stop the way Ctrl-C does."""
    raise Interrupted(signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Run document-it; returns the process exit code."""
    env = os.environ
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["cache"]:
        return _cache_command(argv[1:], env)
    parser = build_parser(env)
    args = parser.parse_args(argv)
    args.explicit = _explicit(parser, argv, env)
    args.flags_given = {arg.split("=", 1)[0] for arg in argv if arg.startswith("--")}
    secrets = (env.get("OPENAI_API_KEY"),)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)  # a scheduler's stop is handled like Ctrl-C
    try:
        verbose = _switch(args.verbose, env, "verbose")
        if args.log_format not in LOG_FORMATS:
            raise ConfigError(f"--log-format must be one of {', '.join(LOG_FORMATS)} (got {args.log_format!r})")
        setup_logging(verbose, args.log_format, secrets)
        settings = settings_from_args(args, env)
        if not settings.resume or "output_dir" in settings.explicit:  # else the resumed run's own folder
            _check_output_dir(settings.output_dir)
        if settings.state_dir.exists() and not settings.state_dir.is_dir():
            raise ConfigError(f"--state-dir {settings.state_dir} is a file, not a folder")
        try:
            private_dir(settings.state_dir)
        except OSError as exc:
            raise ConfigError(f"cannot use --state-dir {settings.state_dir}: {exc.strerror or exc}") from None
        from .pipeline import run  # heavy imports only once the flags are known to be good

        summary = run(settings)
    except OutputError as exc:  # e.g. the disk filled up or the output folder vanished mid-run
        print(f"document-it: error: {printable(redact(str(exc), secrets))}", file=sys.stderr)
        return EXIT_IO
    except DocumentItError as exc:
        print(f"document-it: error: {printable(redact(str(exc), secrets))}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # the machine said no: too many open files, a port in use …
        print(f"document-it: error: {printable(redact(_os_reason(exc), secrets))}", file=sys.stderr)
        return EXIT_USAGE
    except Interrupted as exc:
        return _interrupted(exc.signum, exc.resumable)
    except KeyboardInterrupt:
        return _interrupted(signal.SIGINT, False)
    try:
        return _report(summary, settings)
    except BrokenPipeError:  # `python main.py | head -1`: the reader left; the outputs are written
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK if not summary["documents"]["failed"] else EXIT_SOME_FAILED


def _os_reason(exc: BaseException) -> str:
    """'cannot write out/report.md: No space left on device', not '[Errno 28] No space left on device: …'."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot use {exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return str(exc)


def _interrupted(signum: int, resumable: bool) -> int:
    hint = "; run again with --resume to continue" if resumable else ""
    print(f"document-it: interrupted; pages that finished are in results.jsonl and report.md{hint}", file=sys.stderr)
    return 128 + signum


def run_command() -> None:
    """The program: run main() and exit with its code. After a stop by signal the outputs are written,
    so exit at once rather than wait for downloads still under way in other threads."""
    code = main()
    if code in (128 + signal.SIGINT, 128 + signal.SIGTERM):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise SystemExit(code)


def _cache_command(argv: list[str], env: Mapping[str, str]) -> int:
    """`python main.py cache stats|clear [--state-dir DIR]`."""
    p = _Parser(prog="document-it cache", description="Inspect or empty the cache in --state-dir.")
    p.add_argument("action", choices=["stats", "clear"])
    p.add_argument("--state-dir", default=env.get(_env_name("state-dir")) or ".document_it")
    args = p.parse_args(argv)
    from .core.cache import Memo

    directory = Path(args.state_dir) / "cache"
    if not directory.exists():
        print(f"no cache at {directory}")
        return EXIT_OK
    memo = Memo(directory)
    if args.action == "clear":
        print(f"removed {memo.clear()} entries from {directory}")
    else:
        stats = memo.stats()
        print(f"{directory}: {stats['entries']} entries, {stats['size_bytes'] / 1e6:.1f} MB on disk, "
              f"{stats['lifetime_hits']} hits and {stats['lifetime_misses']} misses since it was made"
              + ("" if stats["enabled"] else " (unreadable: it will be ignored)"))
    memo.close()
    return EXIT_OK


def _report(summary: dict, settings: Settings) -> int:
    docs, llm = summary["documents"], summary["llm"]
    out = Path(summary.get("output_dir") or settings.output_dir)  # --resume may write where the run began
    print(f"{docs['total']} pages: {docs['completed']} completed, {docs['failed']} failed "
          f"in {summary['wall_seconds']:.1f}s ({summary['mode']} mode, {summary['provider_label']}) "
          f"→ {out / 'report.md'}")
    cache = llm.get("cache") or {}
    if cache.get("hits"):
        print(f"cache: {cache['hits']} hits, {cache['misses']} misses ({cache['entries']} entries on disk)")
    if llm.get("requests"):
        cost = llm.get("cost_usd")
        print(f"LLM: {llm['requests']} requests, {llm['attempts']} attempts, {llm['rate_limited']} rate-limited, "
              f"{llm['tokens_in'] + llm['tokens_out']:,} tokens"
              + ("" if cost is None else f", about ${cost:.4f}"))
    changes = summary.get("changes")
    if changes:
        print(f"changes: {changes['added']} added, {changes['changed']} changed, {changes['removed']} removed, "
              f"{changes['unchanged']} unchanged → {out / 'changes.md'}")
    if docs.get("not_reached") and summary["status"] != "completed":
        print(f"{docs['not_reached']} pages not reached ({summary['status']}); --resume continues the run"
              if "queue" in summary else f"{docs['not_reached']} pages not reached ({summary['status']})")
        return EXIT_SOME_FAILED
    if docs["failed"]:
        failures = summary.get("failures") or dict.fromkeys(summary["failed_urls"], "")
        for url, reason in list(failures.items())[:20]:
            print(f"  failed: {printable(url)}" + (f" — {printable(reason)}" if reason else ""))
        if len(failures) > 20:
            print(f"  … and {len(failures) - 20} more (see results.jsonl)")
        return EXIT_SOME_FAILED
    return EXIT_OK
