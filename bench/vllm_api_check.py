"""Check the calls `policies/vllm_engine.py` makes against the source of a real vLLM wheel, on a
machine without a GPU (vLLM cannot be imported here, but its source can be read).

    python bench/vllm_api_check.py [--wheel PATH.whl]   # default: pip download --no-deps vllm

Reads, with `ast` (nothing of vLLM is imported): the fields of `vllm.SamplingParams`, the
parameters of `LLM.__init__`, `LLM.generate`, `sleep`, `wake_up`, `collective_rpc`,
`reset_prefix_cache`, the fields of `EngineArgs` (where `LLM(**kwargs)` ends up), and the name of
the in-process engine-core client; for ``policy.weight_sync=vllm`` against stock ``vllm serve``, the
server's routes ``/pause``, ``/resume``, ``/collective_rpc``, ``EngineArgs.worker_extension_cls`` and
the model's ``load_weights(weights=)``. Then records the keyword arguments our engine passes (through
vLLM-shaped fakes) and prints, for each, whether the real API has it.
"""

from __future__ import annotations

import argparse
import ast
import glob
import os
import subprocess
import sys
import tempfile
import types
import zipfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def read(whl: str, path: str) -> ast.Module:
    with zipfile.ZipFile(whl) as z:
        return ast.parse(z.read(path).decode())


def class_fields(tree: ast.Module, name: str) -> set[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == name:
            return {n.target.id for n in node.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
    raise KeyError(name)


def method_params(tree: ast.Module, cls: str, method: str) -> tuple[set[str], bool]:
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == cls:
            for f in node.body:
                if isinstance(f, ast.FunctionDef) and f.name == method:
                    return {a.arg for a in f.args.args + f.args.kwonlyargs}, f.args.kwarg is not None
    raise KeyError(f"{cls}.{method}")


def route_paths(whl: str) -> set[str]:
    """Every HTTP route vLLM's server declares (``@router.post("/x")``, ``@app.get("/x")``...) in the wheel."""
    paths: set[str] = set()
    with zipfile.ZipFile(whl) as z:
        for name in z.namelist():
            if not (name.startswith(("vllm/entrypoints/", "vllm/frontend/")) and name.endswith(".py")):
                continue
            try:
                tree = ast.parse(z.read(name).decode())
            except SyntaxError:
                continue
            for node in ast.walk(tree):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("get", "post")
                        and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
                        and node.args[0].value.startswith("/")):
                    paths.add(node.args[0].value)
    return paths


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wheel", default=None)
    args = ap.parse_args()
    whl = args.wheel
    if whl is None:
        d = tempfile.mkdtemp(prefix="vllm-wheel-")
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", d, "vllm"], check=True)
        whl = glob.glob(os.path.join(d, "vllm-*.whl"))[0]
    version = os.path.basename(whl).split("-")[1]
    sp_fields = class_fields(read(whl, "vllm/sampling_params.py"), "SamplingParams")
    llm_tree = read(whl, "vllm/entrypoints/llm.py")
    engine_args = class_fields(read(whl, "vllm/engine/arg_utils.py"), "EngineArgs")
    init, init_kwargs = method_params(llm_tree, "LLM", "__init__")
    clients = {n.name for n in ast.walk(read(whl, "vllm/v1/engine/core_client.py")) if isinstance(n, ast.ClassDef)}

    # record what our engine passes, through fakes shaped like vLLM
    from policies import PolicyConfig, SamplingParams
    from policies import vllm_engine as ve
    from policies.tiny import build_model

    calls: dict[str, list] = {"SamplingParams": [], "LLM": [], "generate": [], "sleep": [], "wake_up": [],
                              "collective_rpc": [], "reset_prefix_cache": []}

    class FakeLLM:
        def __init__(self, **kw):
            calls["LLM"].append(kw)
            self.llm_engine = types.SimpleNamespace(engine_core=type("InprocClient", (), {})())

        def generate(self, prompts, sampling_params=None, use_tqdm=False):
            calls["generate"].append({"prompts": prompts, "sampling_params": sampling_params, "use_tqdm": use_tqdm})
            return [types.SimpleNamespace(prompt_token_ids=p["prompt_token_ids"], outputs=[]) for p in prompts]

        def sleep(self, level=1):
            calls["sleep"].append({"level": level})

        def wake_up(self, tags=None):
            calls["wake_up"].append({"tags": tags})

        def collective_rpc(self, method, args=()):
            calls["collective_rpc"].append({"method": method, "args": args})

        def reset_prefix_cache(self):
            calls["reset_prefix_cache"].append({})

    fake = types.ModuleType("vllm")
    fake.__version__ = version
    fake.SamplingParams = lambda **kw: calls["SamplingParams"].append(kw) or types.SimpleNamespace(**kw)
    fake.LLM = FakeLLM
    sys.modules["vllm"] = fake
    model, tok = build_model(seed=0)
    eng = ve.VLLMEngine.from_config(PolicyConfig(model="tiny", engine="vllm"), model, tok)
    eng.generate(["hi"], SamplingParams(n=2, temperature=0.7, max_new_tokens=4, stop=("</answer>",), seed=1))
    eng.sleep()
    eng.update_weights(model)
    eng.generate(["hi"], SamplingParams(n=2, temperature=0.7, max_new_tokens=4, seed=2))

    rows = []
    for kw in calls["SamplingParams"][:1]:
        rows += [(f"SamplingParams({k}=)", k in sp_fields) for k in kw]
    for k in calls["LLM"][0]:
        rows.append((f"LLM({k}=)", k in init or (init_kwargs and k in engine_args)))
    for name in ("generate", "sleep", "wake_up", "collective_rpc", "reset_prefix_cache"):
        params, _ = method_params(llm_tree, "LLM", name)
        for kw in calls[name][:1]:
            rows += [(f"LLM.{name}({k}=)", k in params) for k in kw]
    rows.append(("in-process client class 'InprocClient' exists", "InprocClient" in clients))
    # policy.weight_sync=vllm against stock vllm serve (policies.weight_sync.VLLMServeSync, policies.vllm_worker):
    # the routes it calls, the extension flag, and the worker-side load_weights it uses
    routes = route_paths(whl)
    for route in ("/pause", "/resume", "/collective_rpc", "/v1/completions"):
        rows.append((f"vllm serve route {route}", route in routes))
    rows.append(("EngineArgs(worker_extension_cls=)", "worker_extension_cls" in engine_args))
    llama = read(whl, "vllm/model_executor/models/llama.py")
    rows.append(("LlamaForCausalLM.load_weights(weights=)", "weights" in method_params(llama, "LlamaForCausalLM",
                                                                                       "load_weights")[0]))
    print(f"vLLM {version}: our calls against its source")
    for what, ok in rows:
        print(f"  {'ok  ' if ok else 'MISSING'}  {what}")
    bad = [w for w, ok in rows if not ok]
    print(f"{len(rows) - len(bad)} of {len(rows)} present")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
