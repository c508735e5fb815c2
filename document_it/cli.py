"""Command line: flags (flags.py) and environment → Settings → pipeline.run(), or the cache command; one-line errors."""

from __future__ import annotations

import argparse
import gc
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Mapping, Sequence

from .config import Settings
from .errors import ConfigError, DocumentItError, Interrupted, OutputError
from .flags import CACHE_ACTIONS, build_cache_parser, build_parser, command_index, run_flag
from .logs import LOG_FORMATS, setup_logging
from .core.state_file import private_dir
from .redact import printable, redact
from .settings_from_flags import env_name as _env_name, settings_from_args, switch as _switch

__all__ = ["main", "run_command", "build_parser", "settings_from_args"]

EXIT_OK, EXIT_USAGE, EXIT_SOME_FAILED, EXIT_IO, EXIT_BATCHES_OUT = 0, 2, 3, 4, 5


def _explicit(parser: argparse.ArgumentParser, argv: Sequence[str], env: Mapping[str, str]) -> set[str]:
    """The Settings fields the user chose, on the command line or in the environment."""
    given = {arg.split("=", 1)[0] for arg in argv if arg.startswith("--")} | set(parser.env_used)
    given |= {option for action in parser._actions for option in action.option_strings
              if option.startswith("--") and env.get(_env_name(option[2:]), "").strip()}
    fields = {"parallelism_mode": "mode", "allow_domain": "allow_domains"}
    return {fields.get(action.dest, action.dest) for action in parser._actions
            if any(option in given for option in action.option_strings)}


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
    parser = build_parser(env)
    word = command_index(parser, argv)
    if word is not None and argv[word] == "cache":  # flags may stand before or after the word
        return _cache_command([*argv[:word], *argv[word + 1:]], env, parser)
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
        from .run.pipeline import run  # heavy imports only once the flags are known to be good

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
    gc.disable()  # nothing to collect while starting up; a run turns it on once its libraries are imported
    code = main()
    if code in (128 + signal.SIGINT, 128 + signal.SIGTERM):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise SystemExit(code)


def _cache_command(argv: list[str], env: Mapping[str, str], run_parser: argparse.ArgumentParser) -> int:
    """`python main.py cache stats|clear [--state-dir DIR]`, the flag before or after the action."""
    p = build_cache_parser(env)
    stray = run_flag(run_parser, argv)
    if stray:
        p.error(f"{stray} is for a run; 'cache' takes only --state-dir")
    args = p.parse_args(argv)
    if args.action not in CACHE_ACTIONS:
        p.error(f"unknown cache action {args.action!r}: use 'cache stats' or 'cache clear'")
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
    batch = llm.get("batch_api") or {}
    waiting = docs.get("not_reached", 0) if batch.get("left") else 0  # pages wait for batches: no report yet
    print(f"{docs['total'] + waiting} pages: {docs['completed']} completed, {docs['failed']} failed"
          + (f", {waiting} waiting for batches" if waiting else "")
          + f" in {summary['wall_seconds']:.1f}s ({summary['mode']} mode, {summary['provider_label']}) "
          f"→ {out / ('run.json' if batch.get('left') else 'report.md')}")
    cache = llm.get("cache") or {}
    if cache.get("hits"):
        print(f"cache: {cache['hits']} hits, {cache['misses']} misses ({cache['entries']} entries on disk)")
    if llm.get("requests"):
        cost = llm.get("cost_usd")
        print(f"LLM: {llm['requests']} requests, {llm['attempts']} attempts, {llm['rate_limited']} rate-limited, "
              f"{llm['tokens_in'] + llm['tokens_out']:,} tokens"
              + ("" if cost is None else f", about ${cost:.4f}"))
    if batch.get("requests"):
        cost = batch.get("cost_usd")
        print(f"Batch API: {batch['requests']} requests answered, {batch['tokens_in'] + batch['tokens_out']:,} tokens"
              + ("" if cost is None else f", about ${cost:.4f} (${batch['cost_if_live_usd']:.4f} live)"))
    changes = summary.get("changes")
    if changes:
        print(f"changes: {changes['added']} added, {changes['changed']} changed, {changes['removed']} removed, "
              f"{changes['unchanged']} unchanged → {out / 'changes.md'}")
    if batch.get("left"):  # submitted or exported as asked (0), or still running when --batch-wait ran out
        print(f"batches: {printable(batch['left'])}")
        return EXIT_BATCHES_OUT if batch.get("left_kind") == "waiting" else EXIT_OK
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
