"""What a code sample on a page is and does, read from its text alone (the offline analyser's code patterns)."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass

__all__ = ["Snippet", "describe"]


@dataclass(frozen=True)
class Snippet:
    """A code sample described: its language, a short name and one line on what it does."""

    language: str  # "Python", "Python console", "shell", "SQL", ... ("code" when nothing tells)
    name: str  # the main thing it defines, calls or runs ("class Person(models.Model)", "dropdb -e")
    does: str  # "defines class Person(models.Model) with two CharFields"; empty when nothing was recognised


def describe(code: str, language: str = "") -> Snippet:
    """`code` described; `language` is the page's own label for it (empty when it gave none)."""
    lang = _language(code, language.strip().lower())
    name, does = _READERS.get(lang, _other)(code)
    if not does:
        name, does = _other(code)
    return Snippet(lang, name, does)


# a page's labels for languages, as highlighters name them
_LABELS = {
    "python": "Python", "python3": "Python", "py": "Python", "py3": "Python", "pycon": "Python console",
    "console": "shell", "shell-session": "shell", "shell": "shell", "sh": "shell", "bash": "shell",
    "zsh": "shell", "sh-session": "shell", "sql": "SQL", "postgresql": "SQL", "psql": "SQL",
    "plpgsql": "PL/pgSQL", "json": "JSON", "javascript": "JavaScript", "js": "JavaScript", "html": "HTML",
    "html+django": "HTML template", "django": "template", "jinja": "template", "xml": "XML", "yaml": "YAML",
    "yml": "YAML", "ini": "configuration", "toml": "TOML", "c": "C", "cpp": "C++", "c++": "C++", "java": "Java",
    "go": "Go", "rust": "Rust", "ruby": "Ruby", "perl": "Perl", "css": "CSS", "diff": "diff",
}
_UNLABELLED = {"", "text", "none", "default", "code", "literal", "plain", "output", "raw"}

_PYCON = re.compile(r"^>>>( |$)", re.MULTILINE)
_TYPED = re.compile(r"^(>>>|\.\.\.)( |$)")  # a line typed at a Python console's prompt
_SHELL_PROMPT = re.compile(r"^(?:[$%]|[\w@.~:\[\]-]+[$#%]|\S*\\>) (?=\S)", re.MULTILINE)
_PSQL_PROMPT = re.compile(r"^\w*[=\-(][#>](?: |$)", re.MULTILINE)
_SQL_VERBS = (
    "SELECT|INSERT|UPDATE|DELETE|CREATE|ALTER|DROP|GRANT|REVOKE|WITH|BEGIN|COMMIT|ROLLBACK|EXPLAIN|SET|SHOW|RESET|"
    "VACUUM|COPY|TRUNCATE|COMMENT|ANALYZE|CALL|DO|PREPARE|EXECUTE|DECLARE|FETCH|MOVE|CLOSE|LOCK|LISTEN|NOTIFY|"
    "UNLISTEN|REINDEX|CLUSTER|REFRESH|IMPORT|SECURITY|START|END|ABORT|VALUES|TABLE|MERGE|SAVEPOINT|RELEASE|LOAD|"
    "DISCARD|DEALLOCATE|CHECKPOINT|REASSIGN|CONNECT|DISCONNECT|OPEN|EXEC SQL")
_SQL_START = re.compile(rf"^\s*({_SQL_VERBS})\b|^\s*(select\b.*\bfrom|insert into|delete from|create (table|index|"
                        r"view|function)|update \w+ set)\b")
_COMMAND = re.compile(r"^\s*[a-z.][\w./-]*(\s+[^\s();={}]+)*\s*$")
_PYTHON = re.compile(r"^\s*(from [\w.]+ import|import \w|(async )?def \w|class \w|@\w|\w+ = [\w.]+\(|[A-Z_]+ = [\[{(])",
                     re.MULTILINE)
_C = re.compile(r"^#include\b|^(?:const\s+)?(?!return\b)\w+[\s*]+\**\w+\s*\([^)]*\)\s*;\s*$"  # a prototype
                r"|^\s*(typedef|struct|static|extern)\b|^\w[\w\s*]*\b\w+\s*\([^;]*\)\s*\{?\s*$", re.MULTILINE)
_CONFIG_LINE = re.compile(r"^\s*([A-Za-z_][\w.-]*)\s*=\s*[^\s(][^()]*$")


def _language(code: str, label: str) -> str:
    """The language a page's label names, else the one the code's own shape shows."""
    named = _LABELS.get(label)
    if named == "Python" and _PYCON.search(code):
        return "Python console"
    if named:
        return named
    if label not in _UNLABELLED:
        return label
    return _inferred(code)


def _inferred(code: str) -> str:
    stripped = code.strip()
    if _PYCON.search(code):
        return "Python console"
    if _PSQL_PROMPT.search(code):
        return "psql session"
    if _SHELL_PROMPT.search(code):
        return "shell"
    if _SQL_START.search(_first_line(code)):
        return "SQL"
    if stripped[:1] in "{[" and _json(stripped) is not None:
        return "JSON"
    if stripped.startswith(("{%", "{{")) or "{% " in stripped:
        return "template"
    if re.match(r"<[A-Za-z!?]", stripped):
        return "HTML" if re.match(r"<(!doctype html|html|div|p|a|form|input|span|body|head|ul|table)\b",
                                  stripped, re.IGNORECASE) else "XML"
    if _PYTHON.search(code):
        return "Python"
    lines = _code_lines(code)
    if lines and all(map(_COMMAND.match, lines)) and re.search(r" --?[A-Za-z]| \S*/", code):
        return "shell"
    if _C.search(code) and ";" in code and not _SQL_START.search(code):
        return "C"
    if lines and all(_CONFIG_LINE.match(line) or re.match(r"^\[[\w .-]+\]$", line) for line in lines):
        return "configuration"
    return "code"


def _first_line(code: str) -> str:
    """The block's first line of code, past a label ("<<block>>" opens a PL/pgSQL block)."""
    return next((line for line in _code_lines(code) if not re.match(r"\s*<<\w+>>$", line)), "")


def _code_lines(code: str) -> list[str]:
    """The block's lines that are code: no blank lines, no comment-only lines."""
    return [line for line in (raw.rstrip() for raw in code.splitlines())
            if line.strip() and not line.lstrip().startswith(("#", "--", "//"))]


def _json(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        return None


# --- Python ---------------------------------------------------------------------------------------------

_CLASS = re.compile(r"^\s*class (\w+)(\([^)]*\))?\s*:", re.MULTILINE)
_DEF = re.compile(r"^([ \t]*)(?:async\s+)?def (\w+)\s*\(", re.MULTILINE)
_FIELD = re.compile(r"^\s+\w+\s*=\s*(?:[\w]+\.)*([A-Z]\w*)\(", re.MULTILINE)
_CALL = re.compile(r"(?<![\w.])([A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*)\((?=(.?))")
_IMPORT = re.compile(r"^\s*(?:from ([\w.]+) )?import ([\w.]+)", re.MULTILINE)
_ASSIGN = re.compile(r"^([A-Za-z_]\w*)\s*=", re.MULTILINE)
_NOT_CALLS = {"if", "for", "while", "return", "print", "isinstance", "len", "str", "int", "list", "dict", "set",
              "tuple", "super", "range", "type", "and", "or", "not", "in", "elif", "with", "repr", "float",
              "bool", "sorted", "enumerate", "zip", "getattr", "setattr", "hasattr", "lambda", "assert", "input",
              "iter", "next", "min", "max", "sum", "any", "all", "map", "filter", "format", "id", "abs", "round",
              "vars", "dir", "help", "object", "sizeof"}
_ARGUMENT = {"{": "a dict", "[": "a list", "'": "a string", '"': "a string", "(": "a tuple"}
_WORDS = ["no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def _python(code: str) -> tuple[str, str]:
    classes = _CLASS.findall(code)
    defs = _DEF.findall(code)
    methods = list(dict.fromkeys(name for indent, name in defs if indent))
    functions = [name for indent, name in defs if not indent]
    calls = _calls(code, {name for name, _ in classes} | {name for _, name in defs})
    defined = []
    if classes:
        (first, base), more = classes[0], [name for name, _ in classes[1:]]
        members = [_and([_counted(n, kind) for kind, n in _fields(code).most_common(3)])]
        if methods:
            members.append(f"method{'s' if len(methods) > 1 else ''} {_and([m + '()' for m in methods[:2]])}")
        defined.append(f"class {first}{base}" + (f" (and {_and(more[:2])})" if more else "")
                       + (f" with {_and([m for m in members if m])}" if any(members) else ""))
    if functions:
        defined.append(_and([f + "()" for f in functions[:2]]))
    if defined:
        does = "defines " + ", and ".join(defined) + (f" calling {_and(calls[:3])}" if calls and not classes else "")
        return (f"class {classes[0][0]}{classes[0][1]}" if classes else f"{functions[0]}()"), does
    if calls:
        return calls[0].split(" on ")[0], f"calls {_and(calls[:3])}"
    assigned = list(dict.fromkeys(_ASSIGN.findall(code)))
    if assigned:
        return assigned[0], f"sets {_and(assigned[:3])}"
    imports = [f"{name} from {module}" if module else name for module, name in _IMPORT.findall(code)]
    return (imports[0] if imports else ""), (f"imports {_and(imports[:2])}" if imports else "")


def _fields(code: str) -> Counter[str]:
    """The kinds of the attributes assigned in the bodies of `code`'s classes (not in their methods): the
    fields of a model, say ("CharField": 2)."""
    kinds: Counter[str] = Counter()
    owners: list[tuple[int, bool]] = []  # the enclosing class or def of each line: (its indent, is a class)
    for line in code.splitlines():
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        while owners and owners[-1][0] >= indent:
            owners.pop()
        field = _FIELD.match(line)
        if field and owners and owners[-1][1]:
            kinds[field.group(1)] += 1
        if text.endswith(":") and text.startswith(("class ", "def ", "async def ")):
            owners.append((indent, text.startswith("class ")))
    return kinds


def _console(code: str) -> tuple[str, str]:
    """A Python console session: the statements typed at its prompts (its output left out)."""
    return _python("\n".join(line[4:] for line in code.splitlines() if _TYPED.match(line)))


def _calls(code: str, defined: set[str]) -> list[str]:
    """The functions `code` calls, first seen first, each with the kind of its first argument when literal
    ("json.dumps on a dict"); builtins, keywords and the names it defines itself left out."""
    seen: dict[str, str] = {}
    for name, first in _CALL.findall(_without_strings(code)):
        if name in _NOT_CALLS or name in defined or name.split(".")[0] in ("self", "cls") or name in seen:
            continue
        seen[name] = f"{name} on {_ARGUMENT[first]}" if first in _ARGUMENT else name
    return list(seen.values())


def _without_strings(code: str) -> str:
    """`code` with the inside of each string literal blanked (a call named in a string is not a call), quotes kept
    so that a string argument still shows as one."""
    return re.sub(r"'[^'\n]*'|\"[^\"\n]*\"", lambda m: m.group(0)[0] * 2, code)


# --- shell, SQL, data and markup ------------------------------------------------------------------------

_PIPE = re.compile(r"\s*(?:\|\||&&|[|;])\s*")
_QUIET_COMMANDS = {"echo", "cat", "cd", "sudo", "export", "env", "time"}


def _shell(code: str) -> tuple[str, str]:
    prompted = [line[m.end():] for line in code.splitlines() if (m := _SHELL_PROMPT.match(line))]
    commands = []
    for line in prompted or _code_lines(code):
        for part in _PIPE.split(line.strip()):
            words = [w for w in part.split() if not re.match(r"^\w+=", w)]
            while words and words[0] in ("sudo", "env", "time"):
                words = words[1:]
            if words and re.match(r"^[\w./-]+$", words[0]):
                commands.append(words)
    if not commands:
        return "", ""
    main = next((c for c in commands if c[0] not in _QUIET_COMMANDS), commands[0])
    # `python -m json.tool`, `python manage.py runserver`: the interpreter says less than what it runs
    runs = 3 if main[1:2] == ["-m"] else 2 if main[1:2] and main[1].endswith(".py") else 1
    runs = runs if main[0].startswith("py") else 1
    program = " ".join(main[:runs])
    flags = list(dict.fromkeys(w.split("=")[0] for c in commands if c[:runs] == main[:runs] for w in c[runs:]
                               if re.match(r"^--?[A-Za-z]", w)))
    others = list(dict.fromkeys(c[0] for c in commands if c[0] != main[0]))
    does = f"runs {program}" + (f" with {_and(flags[:4])}" if flags else "")
    does += f"; also {_and(others[:3])}" if others else ""
    typed = " ".join(main)
    return (typed if len(typed) <= 28 else " ".join([program, *flags[:3]])), does  # "dropdb demo", as typed


_STATEMENT = re.compile(r"((?:[A-Z][A-Z_]+ ){0,3}[A-Z][A-Z_]+)\b(?: IF (?:NOT )?EXISTS)?\s*"
                        r"([A-Za-z_][\w.]*|\"[^\"]+\")?")
_FEATURES = ("PRIMARY KEY", "FOREIGN KEY", "REFERENCES", "UNIQUE", "CHECK", "NOT NULL", "DEFAULT", "EXCLUDE",
             "GENERATED", "PARTITION BY", "INHERITS", "JOIN", "WHERE", "GROUP BY", "ORDER BY", "RETURNING",
             "ON CONFLICT", "WINDOW", "OVER")
_CONSTRAINTS = {"PRIMARY KEY", "FOREIGN KEY", "REFERENCES", "UNIQUE", "CHECK", "NOT NULL", "EXCLUDE"}
_TRANSACTION = {"BEGIN", "COMMIT", "ROLLBACK", "END", "START", "SAVEPOINT", "RELEASE", "ABORT"}
_SQL_TYPES = {"char", "varchar", "character", "numeric", "decimal", "int", "integer", "bigint", "smallint",
              "float", "real", "double", "bit", "varbit", "timestamp", "time", "interval", "values", "in", "as",
              "on", "and", "or", "not", "exists", "any", "all", "using", "tsvector"}
_SYNOPSIS = re.compile(r"\[ .* \]|\{ .* \| .* \}")


def _sql(code: str) -> tuple[str, str]:
    text = re.sub(r"'[^'\n]*'", "''", re.sub(r"--[^\n]*", "", _PSQL_PROMPT.sub("", code)))
    heads = list(dict.fromkeys(filter(None, (_statement(part) for part in text.split(";")))))
    if not heads:
        return "", ""
    if _SYNOPSIS.search(text):
        shape = _STATEMENT.match(_required(text).strip())
        kind = shape.group(1) if shape else heads[0]
        return f"{kind} syntax", f"syntax synopsis of {kind}"
    found = [f for f in _FEATURES if re.search(rf"\b{f}\b", text)]
    named = {head.split()[-1] for head in heads}
    called = [f for f in dict.fromkeys(re.findall(r"\b([a-z_][\w.]*)\(", text)) if f not in _SQL_TYPES | named]
    constraints = [f for f in found if f in _CONSTRAINTS]
    more = len(heads) - 3
    does = _and(heads[:3]) if more <= 0 else f"{', '.join(heads[:3])} and {more} more statement" + "s"[:more - 1]
    if constraints:
        does += f" with {'a ' if len(constraints) == 1 else ''}{_and(constraints[:3])} constraint" \
                + ("s" if len(constraints) > 1 else "")
    elif found:
        does += f" with {_and(found[:3])}"
    if called:
        does += f" calling {_and(called[:3])}"
    main = next((h for h in heads if h.split()[0] not in _TRANSACTION), heads[0])
    name = main + (f" ({constraints[0]})" if constraints and len(main) < 24 else "")
    return name, does


def _required(synopsis: str) -> str:
    """A syntax synopsis with its optional [ ... ] and alternative { ... } parts left out: what every use says."""
    for _ in range(4):  # brackets nest a few deep at most
        synopsis = re.sub(r"\[[^\[\]]*\]|\{[^{}]*\}", " ", synopsis)
    return " ".join(synopsis.split())


def _statement(text: str) -> str:
    """`CREATE TABLE films`, `SHOW DateStyle`, `SELECT from films`: a statement's keywords and what they name
    (empty for a part that is not a statement: the output a session printed)."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    first = lines[0].strip() if lines else ""
    verb = re.match(rf"({_SQL_VERBS})\b", first, re.IGNORECASE)
    if verb and verb.group(1).islower():  # lower-case SQL: its keywords as upper case ones, then read alike
        first = verb.group(1).upper() + first[verb.end():]
    match = _STATEMENT.match(first)
    if not match or not re.match(rf"({_SQL_VERBS})\b", match.group(1)):
        return ""
    keywords, target = match.group(1), match.group(2) or ""
    if keywords.startswith("SELECT"):
        source = re.search(r"\bFROM\s+([A-Za-z_][\w.]*)", text, re.IGNORECASE)
        return f"SELECT from {source.group(1)}" if source else "SELECT"
    return f"{keywords} {target}".strip()


def _psql(code: str) -> tuple[str, str]:
    name, does = _sql(code)
    meta = re.findall(r"^\w*[=\-(][#>] (\\\w+)", code, re.MULTILINE)
    return name or (meta[0] if meta else ""), does or (f"runs {_and(list(dict.fromkeys(meta))[:3])}" if meta else "")


def _json_data(code: str) -> tuple[str, str]:
    data = _json(code.strip())
    if isinstance(data, dict):
        keys = list(data)[:4]
        return f"object {{{', '.join(keys)}}}", f"an object with keys {_and(keys)}"
    if isinstance(data, list):
        kinds = Counter(type(item).__name__ for item in data).most_common(1)
        kind = {"dict": "object", "str": "string", "int": "number", "float": "number"}.get(
            kinds[0][0] if kinds else "", "value")
        return f"list of {_counted(len(data), kind)}", f"a list of {_counted(len(data), kind)}"
    return "", ""


def _config(code: str) -> tuple[str, str]:
    keys = [m.group(1) for m in map(_CONFIG_LINE.match, _code_lines(code)) if m]
    return (keys[0] if keys else ""), (f"sets {_and(keys[:4])}" if keys else "")


def _markup(code: str) -> tuple[str, str]:
    tags = list(dict.fromkeys(re.findall(r"<([A-Za-z][\w:-]*)", code)))
    blocks = list(dict.fromkeys(re.findall(r"\{%-?\s*(\w+)", code)))
    shown = [f"<{t}>" for t in tags[:3]] + [f"{{% {b} %}}" for b in blocks[:3]]
    return (shown[0] if shown else ""), (f"uses {_and(shown[:4])}" if shown else "")


def _c(code: str) -> tuple[str, str]:
    structs = re.findall(r"^\s*(?:typedef\s+)?struct\s+(\w+)\s*$", code, re.MULTILINE)
    if structs:
        return f"struct {structs[0]}", f"defines struct {_and(structs[:2])}"
    functions = re.findall(r"^\w[\w\s*]*?\b(\w+)\s*\([^;]*\)\s*\{?\s*$", code, re.MULTILINE)
    declared = re.findall(r"^(?:const\s+)?(?!return\b)\w+[\s*]+\**(\w+)\s*\([^)]*\)\s*;", code, re.MULTILINE)
    if declared and not functions:
        return f"{declared[0]}()", f"declares {_and([d + '()' for d in declared[:3]])}"
    includes = re.findall(r"^#include\s*[<\"]([\w./]+)", code, re.MULTILINE)
    calls = _calls(code, set(functions))
    parts = ([f"defines {_and([f + '()' for f in functions[:2]])}"] if functions else []) + \
            ([("calling " if functions else "calls ") + _and(calls[:3])] if calls else [])
    parts = parts or ([f"includes {_and(includes[:3])}"] if includes else [])
    return (f"{functions[0]}()" if functions else (calls[0] if calls else "")), " ".join(parts)


def _other(code: str) -> tuple[str, str]:
    """Any other code: the functions it calls, else the identifiers it uses most."""
    calls = [c.split(" on ")[0] for c in _calls(code, set()) if len(c) > 2]
    if calls:
        return calls[0], f"calls {_and(calls[:3])}"
    names = [n for n, _ in Counter(re.findall(r"\b[A-Za-z_][\w.]*[_.][\w.]*\w\b|\b[a-z]+[A-Z]\w*\b",
                                              code)).most_common(3)]
    return (names[0] if names else ""), (f"uses {_and(names)}" if names else "")


_READERS = {
    "Python": _python, "Python console": _console, "shell": _shell, "SQL": _sql, "PL/pgSQL": _sql,
    "psql session": _psql, "JSON": _json_data, "configuration": _config, "HTML": _markup, "XML": _markup,
    "template": _markup, "HTML template": _markup, "C": _c, "C++": _c,
}


# --- words ------------------------------------------------------------------------------------------------

def _and(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    items = [i for i in items if i]
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}" if items else ""


def _counted(count: int, noun: str) -> str:
    """'a CharField', 'an IntegerField', 'two CharFields', '12 strings'."""
    if count == 1:
        return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"
    plural = noun + ("es" if noun.endswith(("s", "x", "ch", "sh")) else "s")
    return f"{_WORDS[count] if count < len(_WORDS) else count} {plural}"
