"""Run a Batch API input file against a live OpenAI-compatible server, one line after another, and write the
output file in the Batch API's format (what `vllm run-batch` does for vLLM), for servers that have no batch
runner of their own (llama.cpp's, Ollama) and for the tests:

    python -m document_it.testing.batch_runner -i output/batch-input-1.jsonl -o answers.jsonl \\
        --base-url http://127.0.0.1:8000/v1
    python main.py --batch-api import answers.jsonl

Each line's body goes to BASE_URL/chat/completions as it is; the reply (any status) is written with the line's
custom_id. A line the server does not answer at all (connection refused, timeout) gets an `error` instead."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

import requests

__all__ = ["run_file", "main"]


def run_file(source: Path, out: TextIO, base_url: str, api_key: str | None = None, timeout: float = 600.0) -> int:
    """Answer every line of `source` on `base_url`, writing one output record per line to `out`; returns how
    many came back with HTTP 200."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    answered = 0
    with requests.Session() as session, source.open(encoding="utf-8") as lines:
        for number, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            line = json.loads(raw)
            record: dict[str, Any] = {"id": f"batch_req_{number}", "custom_id": line["custom_id"], "response": None,
                                      "error": None}
            try:
                reply = session.post(f"{base_url.rstrip('/')}/chat/completions", json=line["body"], headers=headers,
                                     timeout=timeout)
                try:
                    body = reply.json()
                except ValueError:
                    body = {"error": {"message": reply.text[:500]}}
                record["response"] = {"status_code": reply.status_code, "request_id": reply.headers.get(
                    "x-request-id", ""), "body": body}
                answered += reply.status_code == 200
            except requests.RequestException as exc:
                record["error"] = {"code": "request_failed", "message": str(exc)[:500]}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            out.flush()
    return answered


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m document_it.testing.batch_runner",
                                description="Answer a Batch API input JSONL on a live OpenAI-compatible server.")
    p.add_argument("-i", "--input", type=Path, required=True, help="the batch input file (--batch-api export)")
    p.add_argument("-o", "--output", type=Path, required=True, help="where the output JSONL goes")
    p.add_argument("--base-url", required=True, help="the server, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds one request may take")
    args = p.parse_args(argv)
    if not args.input.is_file():
        print(f"batch_runner: error: {args.input} is not a file", file=sys.stderr)
        return 2
    partial = args.output.with_name(args.output.name + ".part")
    with partial.open("w", encoding="utf-8") as out:
        answered = run_file(args.input, out, args.base_url, os.environ.get("OPENAI_API_KEY"), args.timeout)
    partial.replace(args.output)  # whole or not at all
    print(f"{answered} lines answered with HTTP 200 → {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
