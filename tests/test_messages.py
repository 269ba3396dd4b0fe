"""Every key an error, warning or hint names exists, and every relative path a message shows says what it is
relative to (issue 27 #8).

The messages are found by reading the source (an AST walk over algos/, envs/, policies/, verifiers/ and
sandbox/), not listed by hand, so a message added tomorrow is checked too: the string constants and
f-strings in a ``raise``, in a call to ``print``, ``warnings.warn``, a logger, ``say`` or ``sys.exit``, in the
constructor of any ``...Error``/``...Exception``/``...Warning``/``SystemExit``, in a variable or module
constant such a call uses, and in what a function of these packages that such a call calls returns
(``path_hint``). A ``key=`` or ``prefix.key=`` in one of them must be a real key:

* a field of an entry point's config, nested ones dotted (``policy.base_url``, ``lora.r``, ``teacher.model``):
  the config classes are the ones the packages hand to ``algos.common.start``, ``algos.config.parse`` or
  ``policies.cli.parse_keys``, found in the source, with their ``KEY_ALIASES`` and ``config``;
* an environment option: a keyword argument of a shipped environment's constructor as ``env.KEY`` (every
  environment's options) or ``env.NAME.KEY`` (that one environment's), ``env.weights`` of a mixture,
  ``env.judge.KEY`` for the judge's settings;
* a flag of one of the packages' argparse command lines (``--timeout=``).

A part written in capitals is a placeholder (``env.NAME.KEY=``), a part built from an f-string field is a
wildcard (``env.{name}.path=``); a key in capitals alone is an environment variable (``HF_HUB_OFFLINE=1``) and
is not checked. What is not a command-line key by design is listed in NOT_KEYS with the reason.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib
import inspect
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("algos", "envs", "policies", "verifiers", "sandbox")
HOLE = "\x00"  # where an f-string's {field} was
MSG_FUNCS = {"print", "warn", "say", "exit", "warning", "error", "info", "exception", "critical", "debug", "fail"}
MSG_CLASS = re.compile(r"(Error|Exception|Warning|Exit)$")


@dataclasses.dataclass(frozen=True)
class Message:
    path: str
    line: int
    text: str
    params: frozenset[str] = frozenset()
    """the parameters of the function the message is in (a message may name its own function's arguments)"""

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.text.replace(HOLE, '{}')!r}"


# ----------------------------------------------------------------------------- collecting the messages


def _text(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else HOLE for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):  # "a" + f"b": one text
        left, right = _text(node.left), _text(node.right)
        if left is not None or right is not None:
            return (left if left is not None else HOLE) + (right if right is not None else HOLE)
    return None


def _texts(node: ast.AST) -> list[tuple[int, str]]:
    """The texts of the string expressions under ``node``, with their lines."""
    t = _text(node)
    if t is not None:
        return [(node.lineno, t)]
    return [x for child in ast.iter_child_nodes(node) for x in _texts(child)]


def _call_name(call: ast.Call) -> str:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


def _is_message(node: ast.AST) -> bool:
    if isinstance(node, ast.Raise):
        return node.exc is not None
    if isinstance(node, ast.Call):
        name = _call_name(node)
        return name in MSG_FUNCS or bool(MSG_CLASS.search(name))
    return False


def _assignments(scope: ast.AST) -> dict[str, list[ast.AST]]:
    out: dict[str, list[ast.AST]] = {}
    for n in ast.walk(scope):
        if isinstance(n, (ast.Assign, ast.AnnAssign, ast.AugAssign)) and n.value is not None:
            for t in (n.targets if isinstance(n, ast.Assign) else [n.target]):
                if isinstance(t, ast.Name):
                    out.setdefault(t.id, []).append(n.value)
    return out


def _returns(fn: ast.AST) -> list[ast.AST]:
    return [n.value for n in ast.walk(fn) if isinstance(n, ast.Return) and n.value is not None]


def module_messages(source: str, path: str, functions: dict[str, list[tuple[str, ast.AST]]] | None = None
                    ) -> list[Message]:
    """The messages of one module's source (``functions``: the packages' functions by name, with their file,
    whose returned strings count when a message calls them)."""
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    module_vars = _assignments(tree)
    functions = functions if functions is not None else {k: [(path, f) for f in v] for k, v in _functions_of(tree).items()}
    scope_vars: dict[ast.AST, dict[str, list[ast.AST]]] = {}
    found: dict[tuple[str, int, str, frozenset[str]], None] = {}
    for node in ast.walk(tree):
        if not _is_message(node):
            continue
        scope = parents.get(node)
        while scope is not None and not isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef)):
            scope = parents.get(scope)
        local = scope_vars.setdefault(scope, _assignments(scope)) if scope is not None else {}
        params = frozenset(a.arg for a in ast.walk(scope.args) if isinstance(a, ast.arg)) if scope is not None else frozenset()
        msg = node.exc if isinstance(node, ast.Raise) else node
        parts = [(path, msg)]
        for n in ast.walk(msg):
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load):
                parts += [(path, v) for v in local.get(n.id) or module_vars.get(n.id) or []]
            elif isinstance(n, ast.Call) and n is not msg and _call_name(n) in functions:
                parts += [(home, r) for home, fn in functions[_call_name(n)] for r in _returns(fn)]
        for home, p in parts:
            for line, t in _texts(p):
                found.setdefault((home, line, t, params), None)
    return [Message(*k) for k in found]


def _functions_of(tree: ast.AST) -> dict[str, list[ast.AST]]:
    out: dict[str, list[ast.AST]] = {}
    for n in ast.walk(tree):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and not n.name.startswith("__"):
            out.setdefault(n.name, []).append(n)
    return out


def _sources() -> dict[str, str]:
    return {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8") for pkg in PACKAGES
            for p in sorted((ROOT / pkg).rglob("*.py"))}


@functools.lru_cache(maxsize=None)
def messages() -> tuple[Message, ...]:
    sources = _sources()
    functions: dict[str, list[tuple[str, ast.AST]]] = {}
    for path, src in sources.items():
        for name, fns in _functions_of(ast.parse(src)).items():
            functions.setdefault(name, []).extend((path, f) for f in fns)
    return tuple(m for path, src in sources.items() for m in module_messages(src, path, functions))


# ----------------------------------------------------------------------------- the keys messages name

# a key: letters, digits, _ and f-string fields, dotted; not a comparison (==, <=, !=), not inside a word, a
# URL's query (?a=1&b=2) or a {mapping}; a flag: --name
_KEY = re.compile(r"(?<![\w.\-/@:{<>!=?&%$\x00])([A-Za-z_\x00][\w\x00]*(?:\.[\w\x00]+)*)=(?!=)")
_FLAG = re.compile(r"(?<![\w-])(--[a-z][\w-]*)")


def mentioned_keys(text: str) -> list[tuple[int, str]]:
    """The ``key=`` mentions of a message, with their offsets: f-string fields as ``\\x00``; fully computed
    keys and environment variables (a key in capitals) left out."""
    out = []
    for m in _KEY.finditer(text):
        key = m.group(1)
        if not key.replace(HOLE, "").replace(".", "").strip("_"):
            continue  # {prefix}{name}=: computed
        if "." not in key and HOLE not in key and key.isupper():
            continue  # HF_HUB_OFFLINE=1, KEY=VALUE: an environment variable or a placeholder
        out.append((m.start(1), key))
    return out


def mentioned_flags(text: str) -> list[str]:
    return _FLAG.findall(text)


def _key_pattern(key: str) -> re.Pattern[str]:
    """A mentioned key as a pattern: a part in capitals (NAME, KEY) is any part, an f-string field any text."""
    parts = []
    for p in key.split("."):
        if p.isupper() or p == HOLE:
            parts.append(r"[^.]+")
        else:
            parts.append(r"[\w:/-]*".join(re.escape(x) for x in p.split(HOLE)))
    return re.compile(r"\.".join(parts))


@functools.lru_cache(maxsize=None)
def commands() -> dict[str, tuple[str, frozenset[str]]]:
    """Every command that takes ``key=value``, as ``{command: (its module's file, its keys)}``: the configs
    handed to start/parse/parse_keys in the packages (``algos.grpo``, ``algos.evaluate``, ``policies serve``),
    nested keys dotted and parse_keys' groups under their prefix (``{"policy": PolicyConfig}``: ``policy.``);
    ``config``, the ``KEY_ALIASES`` and, where the config has ``env``, the environment options."""
    out: dict[str, tuple[str, set[str]]] = {}
    for path, src in _sources().items():
        module = importlib.import_module(path[:-3].replace("/", "."))
        tree = ast.parse(src)
        imported = {a.asname or a.name: n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
                    for a in n.names}
        consts = {k: v[0].value for k, v in _assignments(tree).items() if isinstance(v[0], ast.Constant)}
        for n in ast.walk(tree):
            if not (isinstance(n, ast.Call) and _call_name(n) in ("start", "parse", "parse_keys")):
                continue
            named = [("", a.id) for a in n.args if isinstance(a, ast.Name)]
            named += [(k.value + "." if k.value else "", v.id) for a in n.args if isinstance(a, ast.Dict)
                      for k, v in zip(a.keys, a.values) if isinstance(k, ast.Constant) and isinstance(v, ast.Name)]
            named = [(prefix, name) for prefix, name in named if name.endswith("Config")]
            if not named:
                continue
            prog = next((k.value for k in n.keywords if k.arg == "prog"), None)
            if _call_name(n) == "start":
                prog = "algos." + n.args[2].value
            elif isinstance(prog, ast.Constant):
                prog = prog.value
            elif isinstance(prog, ast.Name):
                prog = consts.get(prog.id)
            prog = prog if isinstance(prog, str) else path[:-3].replace("/", ".")
            prog = " ".join(prog.removeprefix("python -m ").split()[:2]) if _call_name(n) == "parse_keys" else prog
            keys = out.setdefault(prog, (path, set()))[1]
            for prefix, name in named:
                cls = getattr(module, name) if hasattr(module, name) else getattr(importlib.import_module(imported[name]), name)
                keys |= _fields(cls, prefix) | set(getattr(cls, "KEY_ALIASES", {}))
                if _call_name(n) != "parse_keys":
                    keys.add("config")
                if "env_kwargs" in keys:
                    keys.discard("env_kwargs")  # set as env.KEY=
                    keys |= env_keys()
    return {k: (path, frozenset(keys)) for k, (path, keys) in out.items()}


def _fields(cls: type, prefix: str = "") -> set[str]:
    """A config's keys, nested configs' dotted."""
    out = set()
    for f in dataclasses.fields(cls):
        sub = _nested(cls, f.name)
        out |= _fields(sub, f"{prefix}{f.name}.") if sub is not None else {prefix + f.name}
    return out


def _nested(cls: type, name: str) -> type | None:
    import typing

    tp = typing.get_type_hints(cls).get(name)
    return tp if dataclasses.is_dataclass(tp) else None


def _env_options() -> dict[str, set[str]]:
    """{environment name: its constructor's keyword arguments}, for every shipped environment."""
    import envs.registry as reg

    out = {}
    for name in sorted(set(reg.ALIASES) | set(reg.MODEL_SCORED)):
        target = reg._entry_class(name)
        params = inspect.signature(target).parameters.values()
        out[name] = {p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name != "self"}
    return out


# options that take another config's keys: env.judge.KEY (envs.judge.JudgeEnv's ``judge``)
def _dict_options() -> dict[str, type]:
    from policies.judge import JudgeConfig

    return {"judge": JudgeConfig}


def _flags() -> set[str]:
    out = {"--help"}
    for src in _sources().values():
        for n in ast.walk(ast.parse(src)):
            if isinstance(n, ast.Call) and _call_name(n) == "add_argument":
                out |= {a.value for a in n.args if isinstance(a, ast.Constant) and str(a.value).startswith("--")}
            elif isinstance(n, ast.Compare) or isinstance(n, ast.Call) and _call_name(n) == "startswith":
                # a flag parsed by hand: a == "--api-key", a.startswith("--api-key=")
                out |= {c.value.rstrip("=") for c in ast.walk(n) if isinstance(c, ast.Constant)
                        and re.fullmatch(r"--[a-z][\w-]*=?", str(c.value))}
    return out


# named in messages, but not keys of a command line of ours: the reason each is allowed
NOT_KEYS = {
    "key": "the form itself: key=value",
    "--nproc_per_node": "torchrun's flag, in the torchrun command to run",
    "--worker-extension-cls": "vllm serve's flag, in the vllm serve command to start (policy.weight_sync=vllm)",
    "--weight-transfer-config": "vllm serve's flag, in the vllm serve command to start (policy.weight_sync=nccl)",
    "--no-deps": "pip's flag, in the pip command to run",
    "--force-reinstall": "pip's flag, in the pip command to run",
    "--variant": "debootstrap's flag, in the command python -m sandbox image build runs and prints",
    "--include": "debootstrap's flag, in the command python -m sandbox image build runs and prints",
    "num_labels": "transformers' config attribute of a sequence-classification head",
    "finish_reason": "vLLM's output field, shown with its value",
    "score": "python -m verifiers audit's report: a verdict's field and its value",
    "extracted": "python -m verifiers audit's report: a verdict's field and its value",
    "mode": "the server's /pause request field (mode=abort)",
}


@functools.lru_cache(maxsize=None)
def env_keys(only: tuple[str, ...] | None = None) -> frozenset[str]:
    """``env.KEY`` and ``env.NAME.KEY`` of every shipped environment (or of those named in ``only``), and a
    mixture's ``env.weights``."""
    keys = {"env", "env.weights"}
    for name, options in _env_options().items():
        if only is not None and name not in only:
            continue
        keys |= {f"env.{o}" for o in options} | {f"env.{name}.{o}" for o in options}
        for o, cls in _dict_options().items():
            if o in options:
                keys |= {f"env.{o}.{k}" for k in _fields(cls)} | {f"env.{name}.{o}.{k}" for k in _fields(cls)}
    return frozenset(keys)


@functools.lru_cache(maxsize=None)
def real_keys() -> frozenset[str]:
    """Every key of every command, every environment option and every flag."""
    return frozenset(set().union(*(keys for _, keys in commands().values())) | env_keys() | _flags())


_COMMAND = re.compile(r"(?:python -m|torchrun\b[^;]*? -m) ([\w.\x00]+(?: [a-z]+(?![\w.=]))?)")


def _env_modules() -> dict[str, tuple[str, ...]]:
    """{file: the shipped environments whose class it defines}."""
    import envs.registry as reg

    out: dict[str, list[str]] = {}
    for name in _env_options():
        path = inspect.getsourcefile(reg._entry_class(name))
        out.setdefault(str(pathlib.Path(path).resolve().relative_to(ROOT)), []).append(name)
    return {k: tuple(v) for k, v in out.items()}


def allowed_keys(msg: Message, offset: int) -> tuple[str, frozenset[str]]:
    """Where a mention at ``offset`` is checked: the keys of the command named before it in the same clause
    (``python -m algos.reward_model data=...``; ``algos.{algo}``: any of the commands it may be), else of the
    environments the module defines (for ``env.`` keys), else every key."""
    cmds = commands()
    clause = msg.text[:offset].rsplit(";", 1)[-1]
    named = [m.group(1) for m in _COMMAND.finditer(clause)]
    if named:
        pat = _key_pattern(named[-1].replace(" ", "_"))
        which = [c for c in cmds if pat.fullmatch(c.replace(" ", "_"))] or [
            c for c in cmds if pat.fullmatch(c.split()[0])]
        if which:
            return f"python -m {named[-1].replace(HOLE, '{}')}", frozenset().union(*(cmds[c][1] for c in which))
        if named[-1].split(".")[0] in PACKAGES:  # an argparse command of ours: flags only
            return f"python -m {named[-1]}", _flags()
    mine = _env_modules().get(msg.path)
    if mine and msg.text[offset:].startswith("env."):
        return f"the environments of {msg.path} ({', '.join(mine)})", env_keys(mine)
    return "every command", real_keys()


@functools.lru_cache(maxsize=None)
def class_attributes() -> frozenset[str]:
    """``Class.attribute`` of every class of the packages (dataclass fields and class-level names): a message
    may name one as ``TextEnv.correctness_part=`` (the Python API, for an environment's author)."""
    out = set()
    for src in _sources().values():
        for n in ast.walk(ast.parse(src)):
            if isinstance(n, ast.ClassDef):
                out |= {f"{n.name}.{name}" for name in _assignments(ast.Module(body=[b for b in n.body if not isinstance(
                    b, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))], type_ignores=[]))}
                out |= {f"{n.name}.{b.target.id}" for b in n.body if isinstance(b, ast.AnnAssign)
                        and isinstance(b.target, ast.Name)}
    return frozenset(out)


def unknown_keys(msg: Message) -> list[str]:
    """The mentions of ``msg`` that are no key where they are used, each with where it was looked for."""
    bad = []
    for offset, key in mentioned_keys(msg.text):
        if key in NOT_KEYS or key in msg.params:  # pass_at_k(n, c, k): "got n=..., c=..., k=..."
            continue
        head = key.split(".")[0]
        if "." in key and (head == HOLE or head[:1].isupper() and not head.isupper()):  # TextEnv.correctness_part=
            if not any(_key_pattern(key).fullmatch(a) for a in class_attributes()):
                bad.append(f"{key.replace(HOLE, '{}')}= (no class of ours has that attribute)")
            continue
        where, keys = allowed_keys(msg, offset)
        pat = _key_pattern(key)
        if not any(pat.fullmatch(k) for k in keys):
            bad.append(f"{key.replace(HOLE, '{}')}= (not a key of {where})")
    for flag in mentioned_flags(msg.text):
        if flag not in _flags() and flag not in NOT_KEYS:
            bad.append(f"{flag} (no command of ours has it)")
    return bad


# ----------------------------------------------------------------------------- the tests


def test_every_key_a_message_names_exists():
    bad = [f"{m} names {', '.join(u)}" for m in messages() for u in [unknown_keys(m)] if u]
    assert not bad, "messages name keys that do not exist:\n" + "\n".join(bad)


# ----------------------------------------------------------------------------- relative paths

# a message that says a path is not there or cannot be read: it shows the absolute form too
_MISSING = re.compile(r"not found|no such|cannot read|can't read|does not exist|is missing|cannot open|no [\w ./-]{0,40} there")
_PATH_NAME = re.compile(r"(^|_)(path|file|dir|folder|out|out_dir|resume|data|ckpt|checkpoint|src|gguf_file)$")
_ABSOLUTE = {"where", "abspath", "realpath", "resolve", "not_found_locally"}


def unanchored_paths() -> list[str]:
    """f-strings in messages that say a path is missing or unreadable and show a path variable without its
    absolute form (``envs.core.where``, ``os.path.abspath``)."""
    bad = []
    for path, src in _sources().items():
        tree = ast.parse(src)
        absolute = {name for name, values in _assignments(tree).items()  # full = os.path.abspath(folder)
                    if any(isinstance(c, ast.Call) and _call_name(c) in _ABSOLUTE for v in values for c in ast.walk(v))}
        for node in ast.walk(tree):
            if not _is_message(node):
                continue
            for js in ast.walk(node.exc if isinstance(node, ast.Raise) else node):
                if not isinstance(js, ast.JoinedStr) or not _MISSING.search(_text(js)):
                    continue
                anchored = any(isinstance(c, ast.Call) and _call_name(c) in _ABSOLUTE or isinstance(c, ast.Name)
                               and c.id in absolute for c in ast.walk(js))
                for v in js.values:
                    e = v.value if isinstance(v, ast.FormattedValue) else None
                    name = e.id if isinstance(e, ast.Name) else e.attr if isinstance(e, ast.Attribute) else ""
                    if name and _PATH_NAME.search(name) and not anchored:
                        bad.append(f"{path}:{js.lineno}: {{{ast.unparse(e)}}} in {_text(js).replace(HOLE, '{}')!r}")
    return sorted(set(bad))


def test_a_message_that_says_a_path_is_missing_shows_its_absolute_form():
    bad = unanchored_paths()
    assert not bad, "relative to what? show the absolute form (envs.core.where):\n" + "\n".join(bad)


def test_the_checkers_catch_what_they_are_for():
    src = '''
from algos.config import ConfigError
HINT = "or lora.rank=8"
def f(x, c):
    hint = f"set envv.path={x}"
    raise ConfigError(f"{hint}; policy.base_ur=http://h {HINT}, --worker 3, got c={c}, env.{x}.path=, env.NAME.KEY=")
def g(path):
    raise ValueError(f"env.ifeval.difficulty=3, python -m algos.evaluate steps=10; python -m algos.grpo steps=10")
def h():
    print(f"TextEnv.correctness_part=x, TextEnv.no_such=1, python -m algos.{x} resume=R, HF_HUB_OFFLINE=1")
'''
    found = {k for m in module_messages(src, "algos/fake.py") for k in unknown_keys(m)}
    assert {k.split(" ")[0] for k in found} == {"envv.path=", "policy.base_ur=", "lora.rank=", "--worker",
                                               "env.ifeval.difficulty=", "steps=", "TextEnv.no_such="}, found
    assert "steps= (not a key of python -m algos.evaluate)" in found
    # in an environment's module, env.KEY is one of its own options
    env_src = 'def f():\n    raise ValueError("env.difficulty=3 or env.reward=all")\n'
    assert [unknown_keys(m) for m in module_messages(env_src, "envs/ifeval.py")] == [
        ["env.difficulty= (not a key of the environments of envs/ifeval.py (ifeval))"]]
    path_src = 'def f(path):\n    raise OSError(f"cannot read {path}: gone")\n'
    assert [m.text for m in module_messages(path_src, "x.py")] == ["cannot read \x00: gone"]


def test_a_missing_dataset_file_names_env_path_with_its_absolute_form(tmp_path, monkeypatch):
    import envs
    from envs.math_dataset import _load

    monkeypatch.chdir(tmp_path)
    with pytest.raises(envs.EnvError) as e:
        envs.make("gsm8k", path="./no/such.jsonl").reset(seed=0)
    assert str(e.value) == (f"not found locally: env.path=./no/such.jsonl ({tmp_path}/no/such.jsonl, relative to the "
                            f"current directory) does not exist (a path is never looked up on the hub)")
    with pytest.raises(envs.EnvError) as e:  # sft's and dpo's data=: the caller names its key, no env.path
        _load("./no/such.jsonl", None, "train")
    assert "env." not in str(e.value) and f"{tmp_path}/no/such.jsonl, relative to the current directory" in str(e.value)
