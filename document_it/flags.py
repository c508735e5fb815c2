"""The command line's flags, grouped by concern, each with its default from DOCUMENT_IT_<FLAG> when set."""

from __future__ import annotations

import argparse
import os
import re
from typing import Callable, Mapping, NoReturn, Sequence

from . import __version__
from .config import Answers, Fallback, LLMKind, Mode, StructuredMethod, TaskStrategy
from .logs import LOG_FORMATS
from .models import PAGE_TASKS
from .settings_from_flags import env_name

__all__ = ["build_parser", "build_cache_parser", "command_index", "run_flag", "listed", "CACHE_ACTIONS"]

_EXIT_USAGE = 2  # cli.EXIT_USAGE: a usage or configuration mistake
CACHE_ACTIONS = ("stats", "clear")

_USAGE = """%(prog)s [options]
       %(prog)s cache {stats,clear} [--state-dir DIR]"""

_EPILOG = """examples:
  python main.py                        # the bundled sample, offline analyser
  python main.py --source ./docs/html   # a local folder of .html/.md pages
  python main.py --source http://127.0.0.1:8000/ --allow-private  # local site
  python main.py --source https://docs.example.org/llms.txt --llm openai
  python main.py --llm simulate --parallelism-mode sync --limit 5  # no key
  python main.py --source https://docs.example.org/guide/ --max-depth 3 \\
      --incremental                     # nightly: only new and changed pages
  python main.py --resume               # continue a killed run
  python main.py cache stats            # or cache clear; --state-dir anywhere

environment: each flag also reads DOCUMENT_IT_<FLAG> (DOCUMENT_IT_MAX_WORKERS=4),
as do OPENAI_API_KEY, OPENAI_BASE_URL and OPENAI_MODEL; flags win.
exit codes: 0 all pages completed, 3 some pages failed, 2 usage or configuration
error, 4 a local file could not be written (disk full, read-only folder), 5
batches still running after --batch-wait (--resume collects them), 130
interrupted by Ctrl-C, 143 stopped by SIGTERM (what finished is kept in the
outputs; --resume continues, unless --no-queue)."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr (naming the variable it came from) and exit code 2."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.env_used: dict[str, str] = {}

    def error(self, message: str) -> NoReturn:
        found = re.search(r"argument (--[a-z-]+)", message)
        where = f" (from {self.env_used[found.group(1)]})" if found and found.group(1) in self.env_used else ""
        self.exit(_EXIT_USAGE, f"document-it: error: {message}{where} (see --help)\n")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show defaults (unless there is none) and keep the examples' line breaks."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30)

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or isinstance(action.default, bool):
            return action.help or ""
        return super()._get_help_string(action)


def build_parser(env: Mapping[str, str] = os.environ) -> argparse.ArgumentParser:
    """The argument parser, its flags in titled groups; defaults come from the environment where it sets them."""
    p = _Parser(prog="document-it", usage=_USAGE, add_help=False, epilog=_EPILOG, formatter_class=_Formatter,
                description="Turn a documentation site into structured per-page analysis and a report.")

    def d(flag: str, default: object, *also: str) -> object:
        for name in (env_name(flag), *also):
            if env.get(name):
                p.env_used[f"--{flag}"] = name
                return env[name]
        return default

    for add in (_what_to_read, _the_llm, _parallelism, _limits, _batching_and_cache, _downloads, _crawling,
                _job_queue, _dask, _messages):
        add(p, d)
    return p


_Default = Callable[..., object]


def _what_to_read(p: argparse.ArgumentParser, d: _Default) -> None:
    g = p.add_argument_group("what to read and where to write")
    g.add_argument("--source", default=d("source", None),
                   help="llms.txt, sitemap.xml(.gz) or URL list (path or URL), a folder of .html/.md files, or a "
                        "page to crawl from; default: the bundled sample corpus")
    g.add_argument("--limit", type=int, metavar="N", default=d("limit", None),
                   help="analyse at most N pages (default: all)")
    g.add_argument("--output-dir", metavar="DIR", default=d("output-dir", "output"),
                   help="where results.jsonl, report.md and run.json go")
    g.add_argument("--outputs", metavar="FILES", default=d("outputs", "all"),
                   help="besides results.jsonl and run.json: report.md, report.html, llms.txt, llms-full.txt, "
                        "pages (comma-separated), all or none")
    g.add_argument("--state-dir", metavar="DIR", default=d("state-dir", ".document_it"),
                   help="home of the cache and the job queue (jobs.sqlite)")


def _the_llm(p: argparse.ArgumentParser, d: _Default) -> None:
    g = llm = p.add_argument_group("the LLM")
    g.add_argument("--llm", choices=[k.value for k in LLMKind], default=d("llm", "auto"),
                   help="auto: openai with OPENAI_API_KEY or a base URL, else the offline extractive analyser; "
                        "simulate: the built-in simulator")
    g.add_argument("--llm-base-url", metavar="URL", default=d("llm-base-url", None, "OPENAI_BASE_URL"),
                   help="any OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
    g.add_argument("--model", metavar="NAME", default=d("model", None, "OPENAI_MODEL"),
                   help="model for page analyses and syntheses; default: gpt-4o-mini, or the first model "
                        "--llm-base-url lists if it has none of that name")
    g.add_argument("--sub-model", metavar="NAME", default=d("sub-model", None),
                   help="model for per-chunk notes on long pages; default: --model")
    g = p.add_argument_group("what each page is asked")
    g.add_argument("--tasks", metavar="NAMES", default=d("tasks", None),
                   help=f"comma-separated analyses asked of every page, from: "
                        f"{', '.join(task.value for task in PAGE_TASKS)}; default: all")
    g.add_argument("--task-strategy", metavar="HOW", choices=[s.value for s in TaskStrategy],
                   default=d("task-strategy", "auto"),
                   help="combined: one request per page returns every analysis (the page is read once); "
                        "separate: one per page and analysis; auto: combined, except where separate ones pay")
    g.add_argument("--no-synthesis", action="store_true", default=None,
                   help="per-page analyses only; no topic syntheses")
    g.add_argument("--answers", metavar="LENGTH", choices=[a.value for a in Answers], default=d("answers", "auto"),
                   help="full: lists of up to 6 items; brief: up to 3, shorter strings; auto: brief once a "
                        "server writes under 33 tokens/s")
    g.add_argument("--extract-fields", metavar="NAMES", default=d("extract-fields", None),
                   help="comma-separated fields read from every page, e.g. 'name,version,license' (needs an LLM)")
    g = llm
    g.add_argument("--structured-output", metavar="METHOD", choices=[m.value for m in StructuredMethod],
                   default=d("structured-output", "auto"),
                   help="how JSON is asked for: json_schema, function_calling, json_mode, or auto: the first "
                        "the server takes")
    g.add_argument("--context-tokens", metavar="N", default=d("context-tokens", None),
                   help="the model's context window, no request is larger; default: what the server announces, "
                        "else 8192")
    g.add_argument("--chunk-tokens", type=int, metavar="N", default=d("chunk-tokens", 800),
                   help="the parser's chunk size; a page too long for the model's window is read in pieces of "
                        "neighbouring chunks, as large as the window holds")
    g.add_argument("--request-timeout", type=float, metavar="SECONDS", default=d("request-timeout", 60.0),
                   help="time per LLM request attempt")
    g.add_argument("--sim-latency-ms", type=float, metavar="MS", default=d("sim-latency-ms", 400.0),
                   help="reply latency of the simulator --llm simulate starts")


def _limits(p: argparse.ArgumentParser, d: _Default) -> None:
    g = p.add_argument_group("limits, retries and budgets")
    g.add_argument("--rpm", type=float, metavar="N", default=d("rpm", 0),
                   help="requests per minute to pace at (0: none, or what the server announces)")
    g.add_argument("--tpm", type=float, metavar="N", default=d("tpm", 0),
                   help="tokens per minute, 0: none")
    g.add_argument("--retries", type=int, metavar="N", default=d("retries", 3),
                   help="retries on 429, 408, 409, 5xx, timeouts, dropped connections, bad replies")
    g.add_argument("--max-wait", type=float, metavar="SECONDS", default=d("max-wait", 300.0),
                   help="how long a page waits for an LLM that is down before it fails")
    g.add_argument("--fallback", choices=[f.value for f in Fallback], default=d("fallback", "none"),
                   help="extractive: the offline analyser answers when the LLM stays down (labelled)")
    g.add_argument("--max-cost", type=float, metavar="USD", default=d("max-cost", None),
                   help="start no new page once the estimated cost reaches this")
    g.add_argument("--max-tokens", type=int, metavar="N", default=d("max-tokens", None),
                   help="start no new page once this many tokens (in + out) are spent")
    g.add_argument("--price-in", type=float, metavar="USD", default=d("price-in", None),
                   help="USD per 1M input tokens (default: the built-in table for known models)")
    g.add_argument("--price-out", type=float, metavar="USD", default=d("price-out", None),
                   help="USD per 1M output tokens")


def _batching_and_cache(p: argparse.ArgumentParser, d: _Default) -> None:
    g = p.add_argument_group("batching and cache")
    g.add_argument("--batch-size", type=int, metavar="N", default=d("batch-size", 0),
                   help="prompts per batched request: 0 auto (up to 8), 1 off, N at most N")
    g.add_argument("--batch-max-tokens", type=int, metavar="N", default=d("batch-max-tokens", 0),
                   help="prompt tokens a batched request may carry; 0: what the window holds")
    g.add_argument("--no-cache", action="store_true", default=None,
                   help="neither read nor write the cache in --state-dir")
    g.add_argument("--refresh", action="store_true", default=None,
                   help="recompute everything and overwrite what the cache holds")
    g.add_argument("--cache-size-limit", dest="cache_size_mb", metavar="MB", type=float,
                   default=d("cache-size-limit", 1024.0), help="past this the oldest entries are evicted")


def _parallelism(p: argparse.ArgumentParser, d: _Default) -> None:
    g = p.add_argument_group("parallelism")
    g.add_argument("--parallelism-mode", metavar="MODE", choices=[m.value for m in Mode],
                   default=d("parallelism-mode", "hybrid"),
                   help=f"where each stage runs: {', '.join(m.value for m in Mode)} (README, 'Parallelism modes')")
    g.add_argument("--max-workers", type=int, metavar="N", default=d("max-workers", 8), help="download threads")
    g.add_argument("--analysis-workers", type=int, metavar="N", default=d("analysis-workers", os.cpu_count() or 2),
                   help="worker processes for parsing and process-mode analysis")
    g.add_argument("--max-concurrency", type=int, metavar="N", default=d("max-concurrency", 20),
                   help="most LLM requests in flight")


def _downloads(p: argparse.ArgumentParser, d: _Default) -> None:
    g = p.add_argument_group("downloads and parsing")
    g.add_argument("--allow-private", action="store_true", default=None,
                   help="allow loopback, private and link-local addresses (refused by default, also after "
                        "redirects), e.g. a site served on 127.0.0.1")
    g.add_argument("--fetch-timeout", type=float, metavar="SECONDS", default=d("fetch-timeout", 30.0),
                   help="how long a download may stall (connect: 10 s)")
    g.add_argument("--max-page-mb", type=float, metavar="MB", default=d("max-page-mb", 5.0),
                   help="larger pages are skipped with a clear error")
    g.add_argument("--parse-timeout", type=float, metavar="SECONDS", default=d("parse-timeout", 30.0),
                   help="a page taking longer to parse fails; the run goes on")
    g.add_argument("--parse-memory-mb", type=float, metavar="MB", default=d("parse-memory-mb", 1024.0),
                   help="memory a parse worker may add (0: no cap); a page past it fails")


def _crawling(p: argparse.ArgumentParser, d: _Default) -> None:
    g = p.add_argument_group("crawling", "when --source is a web page, not an index: breadth-first over its host\n"
                             "and folder, robots.txt honoured, sitemap.xml read when present")
    g.add_argument("--max-depth", type=int, metavar="N", default=d("max-depth", 2),
                   help="links followed from the start page")
    g.add_argument("--max-pages", type=int, metavar="N", default=d("max-pages", 500),
                   help="pages a crawl visits at most")
    g.add_argument("--allow-domain", action="append", default=listed(d("allow-domain", None)), metavar="HOST",
                   help="also follow links to this host and its subdomains (repeatable)")
    g.add_argument("--include", action="append", default=listed(d("include", None)), metavar="REGEX",
                   help="follow only URLs matching one of these, instead of the same-folder rule (repeatable)")
    g.add_argument("--exclude", action="append", default=listed(d("exclude", None)), metavar="REGEX",
                   help="never follow URLs matching this (repeatable)")
    g.add_argument("--per-host", type=int, metavar="N", default=d("per-host", 4),
                   help="downloads at once from one host")
    g.add_argument("--delay", type=float, metavar="SECONDS", default=d("delay", 0.0),
                   help="between download starts on one host (a longer robots.txt Crawl-delay wins)")


def _job_queue(p: argparse.ArgumentParser, d: _Default) -> None:
    g = p.add_argument_group("job queue and nightly runs",
                             "every page's state is kept in --state-dir/jobs.sqlite: a killed\n"
                             "run resumes, a nightly run re-analyses only what changed (docs/nightly.md)")
    queue = g.add_mutually_exclusive_group()
    queue.add_argument("--enable-queue", dest="enable_queue", action="store_const", const=True, default=None,
                       help="a spent budget leaves the rest for --resume")
    queue.add_argument("--no-queue", dest="enable_queue", action="store_const", const=False,
                       help="jobs in a temporary database: no --resume")
    g.add_argument("--resume", action="store_true", default=None,
                   help="continue the last unfinished run in --state-dir, with its source and options")
    g.add_argument("--incremental", action="store_true", default=None,
                   help="re-analyse only new and changed pages, keep the rest; writes changes.md")
    g.add_argument("--batch-api", nargs="*", metavar="MODE", default=d("batch-api", None),
                   help="the provider's Batch API, half price: on, strict, submit-only, export, import FILE")
    g.add_argument("--batch-wait", metavar="TIME", default=d("batch-wait", "24h"),
                   help="how long a run waits for its batches; a later run collects the rest")
    g.add_argument("--batch-discount", type=float, metavar="FRACTION", default=d("batch-discount", 0.5),
                   help="the Batch API price cut")
    g.add_argument("--grace", type=float, metavar="SECONDS", default=d("grace", 5.0),
                   help="time pages under way get to finish on Ctrl-C or SIGTERM")


def _dask(p: argparse.ArgumentParser, d: _Default) -> None:
    g = p.add_argument_group("dask mode", "--parallelism-mode dask: parsing and the offline analyser run on a Dask\n"
                             "cluster; the cache, job queue and outputs stay here (docs/distributed.md)")
    g.add_argument("--dask-scheduler", metavar="ADDRESS", default=d("dask-scheduler", None, "DASK_SCHEDULER_ADDRESS"),
                   help="a running scheduler, e.g. tcp://10.0.0.5:8786 (also DASK_SCHEDULER_ADDRESS); "
                        "default: a local cluster of --analysis-workers processes")
    g.add_argument("--dask-timeout", type=float, metavar="SECONDS", default=d("dask-timeout", 10.0),
                   help="to reach --dask-scheduler (else exit 2), or to be without workers")
    g.add_argument("--distributed-llm", action="store_true", default=None,
                   help="send LLM requests from the workers too (one cluster-wide cap and rate)")


def _messages(p: argparse.ArgumentParser, d: _Default) -> None:
    g = p.add_argument_group("messages and logging")
    g.add_argument("--quiet", action="store_true", default=None, help="no progress bar, only the final summary")
    g.add_argument("--verbose", action="store_true", default=None, help="log retries, pauses and skips to stderr")
    g.add_argument("--log-format", choices=LOG_FORMATS, default=d("log-format", "text"),
                   help="json: one JSON object per line, for log collectors")
    g.add_argument("-h", "--help", action="help", help="show this help and exit")
    g.add_argument("--version", action="version", version=f"document-it {__version__}",
                   help="show the version and exit")


def build_cache_parser(env: Mapping[str, str] = os.environ) -> argparse.ArgumentParser:
    """`document-it cache {stats,clear} [--state-dir DIR]`."""
    p = _Parser(prog="document-it cache", usage="document-it cache {stats,clear} [--state-dir DIR]",
                description="Inspect (stats) or empty (clear) the cache in --state-dir.", formatter_class=_Formatter)
    p.add_argument("action", metavar="{stats,clear}", help="stats: entries, size and hits; clear: remove them all")
    p.add_argument("--state-dir", metavar="DIR", default=env.get(env_name("state-dir")) or ".document_it",
                   help="where the cache lives (in DIR/cache)")
    return p


def command_index(parser: argparse.ArgumentParser, argv: Sequence[str]) -> int | None:
    """Where the first word that is neither a flag nor a flag's value stands (`cache`), if there is one."""
    value_next = False
    for index, token in enumerate(argv):
        if value_next:
            value_next = False
        elif token == "--":
            return index + 1 if index + 1 < len(argv) else None
        elif token.startswith("-") and token != "-":
            action = _action_for(parser, token.split("=", 1)[0])
            value_next = action is not None and action.nargs != 0 and "=" not in token
        else:
            return index
    return None


def run_flag(parser: argparse.ArgumentParser, argv: Sequence[str]) -> str | None:
    """The first of `parser`'s flags in `argv` that is for a run, not for `cache` (which takes --state-dir)."""
    for token in argv:
        action = _action_for(parser, token.split("=", 1)[0]) if token.startswith("-") else None
        if action is not None and not {"--state-dir", "--help"} & set(action.option_strings):
            return action.option_strings[-1]
    return None


def _action_for(parser: argparse.ArgumentParser, option: str) -> argparse.Action | None:
    """The action an option names, also by a unique abbreviation (as argparse reads them)."""
    actions = parser._option_string_actions
    if option in actions:
        return actions[option]
    found = {id(action): action for name, action in actions.items() if name.startswith(option) and len(option) > 2}
    return next(iter(found.values())) if len(found) == 1 else None


def listed(value: object) -> list[str] | None:
    """A repeatable flag's default from the environment: comma-separated values."""
    if not value:
        return None
    return [part.strip() for part in str(value).split(",") if part.strip()]
