import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from policies import PolicyConfig, SamplingParams, load
from policies.base import PolicyError
from policies.hf import TransformersEngine
from policies.openai_client import OpenAIEngine, OpenAIError
from policies.tiny import build_model, build_tokenizer
from policies.vllm_engine import to_rollouts
from tests.fake_openai import send_json


@pytest.fixture(scope="module")
def tiny():
    model, tok = build_model(seed=0)
    return TransformersEngine(model, tok)


def test_tokenizer_and_model_roundtrip(tmp_path):
    model, tok = build_model(seed=1)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    m2 = AutoModelForCausalLM.from_pretrained(tmp_path)
    t2 = AutoTokenizer.from_pretrained(tmp_path)
    assert type(m2).__name__ == "LlamaForCausalLM"
    text = "<think>\n47+38: 7+8=15 carry 1\n</think>\n<answer>85</answer>"
    ids = t2(text, add_special_tokens=False)["input_ids"]
    assert ids == tok(text, add_special_tokens=False)["input_ids"]
    assert t2.decode(ids) == text
    assert len(ids) < len(text)  # the tags are single tokens
    x = torch.tensor([ids])
    assert torch.allclose(m2(x).logits, model(x).logits, atol=1e-6)
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Compute: 1 + 2"}]
    assert t2.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True) == "<|user|>Compute: 1 + 2<|assistant|>"
    assert 0.3e6 < sum(p.numel() for p in m2.parameters()) < 10e6


def test_sampling_logprobs_equal_recomputed_mixed_lengths(tiny):
    prompts = ["Compute: 1 + 2", [{"role": "user", "content": "Compute: 123 + 456 - 78 * 9"}], "x",
               "a much longer prompt than the others, so the padding is visible"]
    out = tiny.generate(prompts, SamplingParams(n=3, temperature=1.0, max_new_tokens=24, seed=0))
    assert [len(o) for o in out] == [3, 3, 3, 3]
    flat = [r for rs in out for r in rs]
    assert len({len(r.prompt_ids) for r in flat}) == 4
    rec = tiny.logprobs(flat)
    for r, lp in zip(flat, rec):
        assert len(r.logprobs) == len(r.completion_ids) == len(lp)
        assert max(abs(a - b) for a, b in zip(r.logprobs, lp)) < 1e-4


def test_left_padding_does_not_change_a_prompts_output(tiny):
    alone = tiny.generate(["Compute: 5 + 7"], SamplingParams(temperature=0, max_new_tokens=16))[0][0]
    batched = tiny.generate(["Compute: 5 + 7", "a much longer prompt " * 3], SamplingParams(temperature=0, max_new_tokens=16))[0][0]
    assert alone.completion_ids == batched.completion_ids


def test_seed_and_greedy_are_deterministic(tiny):
    p = SamplingParams(n=4, temperature=1.0, max_new_tokens=12, seed=7)
    a, b = tiny.generate(["hi"], p), tiny.generate(["hi"], p)
    assert [r.completion_ids for r in a[0]] == [r.completion_ids for r in b[0]]
    g = SamplingParams(n=2, temperature=0, max_new_tokens=12)
    (r1, r2), = tiny.generate(["hi"], g)
    assert r1.completion_ids == r2.completion_ids


def test_finish_reasons_and_stop_strings(tiny):
    out = tiny.generate(["q"] * 4, SamplingParams(n=4, max_new_tokens=5, seed=0))
    assert all(r.finish_reason in ("eos", "length") for rs in out for r in rs)
    assert any(r.finish_reason == "length" and len(r.completion_ids) == 5 for rs in out for r in rs)
    model, tok = build_model(seed=0)
    eng = TransformersEngine(model, tok)
    # every character is a stop candidate: generation stops at once with the stop string cut off
    chars = tuple(c for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
    rs = eng.generate(["q"], SamplingParams(n=8, max_new_tokens=30, seed=1, stop=chars))[0]
    stopped = [r for r in rs if r.finish_reason == "stop"]
    assert stopped and all(not any(c in r.text for c in chars) for r in stopped)


def test_top_k_one_is_greedy(tiny):
    a = tiny.generate(["Compute: 1 + 1"], SamplingParams(temperature=1.0, top_k=1, max_new_tokens=10, seed=3))[0][0]
    b = tiny.generate(["Compute: 1 + 1"], SamplingParams(temperature=0, max_new_tokens=10))[0][0]
    assert a.completion_ids == b.completion_ids
    c = tiny.generate(["Compute: 1 + 1"], SamplingParams(temperature=1.0, top_p=1e-6, max_new_tokens=10, seed=3))[0][0]
    assert c.completion_ids == b.completion_ids


@pytest.mark.parametrize("kw,msg", [({"n": 0}, "n must"), ({"temperature": -1}, "temperature"), ({"top_p": 0}, "top_p"),
                                    ({"top_k": -1}, "top_k"), ({"max_new_tokens": 0}, "max_new_tokens")])
def test_sampling_params_validation(kw, msg):
    with pytest.raises(ValueError, match=msg):
        SamplingParams(**kw)


def test_load_errors_are_clear():
    with pytest.raises(PolicyError, match="policy.model=/no/such/model: not found locally"):
        load(PolicyConfig(model="/no/such/model"))
    with pytest.raises(ValueError, match="dtype"):
        load(PolicyConfig(model="tiny", dtype="float8"))


def test_shipped_checkpoint_loads_like_any_checkpoint():
    from policies.tiny import SHIPPED

    m = AutoModelForCausalLM.from_pretrained(SHIPPED["tiny-sft"])
    t = AutoTokenizer.from_pretrained(SHIPPED["tiny-sft"])
    assert m.config.model_type == "llama" and t.chat_template


# ----------------------------------------------------------------------------- vLLM core

def _lp(ids, vals):
    return [{i: SimpleNamespace(logprob=v)} for i, v in zip(ids, vals)]


def test_vllm_outputs_become_rollouts():
    req = SimpleNamespace(prompt_token_ids=[1, 2, 3], outputs=[
        SimpleNamespace(token_ids=[5, 6, 2], text="ab", logprobs=_lp([5, 6, 2], [-0.1, -0.2, -0.3]), finish_reason="stop", stop_reason=None),
        SimpleNamespace(token_ids=[5, 7], text="a</answer>", logprobs=_lp([5, 7], [-0.5, -0.6]), finish_reason="stop", stop_reason="</answer>"),
        SimpleNamespace(token_ids=[9, 9, 9, 9], text="zzzz", logprobs=None, finish_reason="length", stop_reason=None),
    ])
    r = to_rollouts("p", req, stop=("</answer>",))
    assert [x.finish_reason for x in r] == ["eos", "stop", "length"]
    assert r[0].logprobs == (-0.1, -0.2, -0.3) and r[0].prompt_ids == (1, 2, 3)
    assert r[1].text == "a" and r[2].logprobs is None and r[2].truncated


def test_vllm_engine_without_vllm_names_the_extra():
    try:
        import vllm  # noqa: F401
        pytest.skip("vllm is installed here; this test checks the message on machines without it")
    except ImportError:
        pass
    with pytest.raises(ImportError, match=r"rlvr-gym\[vllm\]"):
        load(PolicyConfig(model="tiny", engine="vllm"))


# ----------------------------------------------------------------------------- OpenAI-compatible client

class _Handler(BaseHTTPRequestHandler):
    fail_first = {"n": 0}
    seen: list = []

    def log_message(self, *a):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Handler.seen.append((self.path, body, self.headers.get("Authorization")))
        if _Handler.fail_first["n"] > 0:
            _Handler.fail_first["n"] -= 1
            self.send_response(503 if _Handler.fail_first["n"] % 2 else 429)
            self.end_headers()
            return
        if body.get("model") == "forbidden":
            self.send_response(400)
            self.end_headers()
            self.wfile.write(b'{"error": "bad model"}')
            return
        n = body.get("n", 1)
        if self.path.endswith("/chat/completions"):
            q = body["messages"][-1]["content"]
            choices = [{"index": i, "message": {"role": "assistant", "content": f"echo {q} {i}"}, "finish_reason": "stop",
                        "logprobs": {"content": [{"token": "e", "logprob": -0.5}, {"token": "c", "logprob": -0.25}]}}
                       for i in range(n)]
        else:
            choices = [{"index": i, "text": f"done {body['prompt']} </answer> tail", "finish_reason": "length",
                        "logprobs": {"token_logprobs": [-1.0, -2.0]}} for i in range(n)]
        send_json(self, {"choices": choices})


@pytest.fixture()
def server():
    srv = HTTPServer(("127.0.0.1", 0), _Handler)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    _Handler.seen.clear()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()


def test_openai_client_chat_completions_retries(server):
    eng = OpenAIEngine(server, "m", api_key="sk-test", max_concurrency=4)
    _Handler.fail_first["n"] = 2
    out = eng.generate([[{"role": "user", "content": "hi"}], [{"role": "user", "content": "yo"}]], SamplingParams(n=2))
    assert eng.n_retries == 2
    assert [r.text for r in out[0]] == ["echo hi 0", "echo hi 1"] and out[1][0].text == "echo yo 0"
    assert out[0][0].logprobs == (-0.5, -0.25) and out[0][0].finish_reason == "eos"
    assert all(h == "Bearer sk-test" for _, _, h in _Handler.seen)
    out = eng.generate(["text prompt"], SamplingParams(n=1, stop=("</answer>",)))
    assert out[0][0].text == "done text prompt " and out[0][0].finish_reason == "length"
    assert out[0][0].logprobs == (-1.0, -2.0)
    assert _Handler.seen[-1][0].endswith("/completions") and _Handler.seen[-1][1]["stop"] == ["</answer>"]


def test_openai_client_errors(server):
    with pytest.raises(OpenAIError, match="400"):
        OpenAIEngine(server, "forbidden").generate(["x"], SamplingParams())
    with pytest.raises(ConnectionError, match="after 2 attempts"):
        OpenAIEngine("http://127.0.0.1:9/v1", "m", max_retries=1, timeout=2).generate(["x"], SamplingParams())
    with pytest.raises(ValueError, match="base_url"):
        load(PolicyConfig(engine="openai"))


def test_lean_decoder_rows_copied_and_dropped_unevenly():
    """The lean decoder's split cache (one prompt cache per distinct prompt, one generated cache per
    row): after prompts are copied to an uneven number of rows, and rows and whole prompts leave the
    batch, every step's logits equal the transformers forward pass over each row's whole sequence."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from policies import lean
    from policies.hf import _positions

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=96, intermediate_size=96, num_hidden_layers=2,
                                         num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=64,
                                         pad_token_id=0)).eval()
    prompts = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]]
    P = 5
    ids = torch.zeros((3, P), dtype=torch.long)
    mask = torch.zeros((3, P), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, P - len(p):], mask[i, P - len(p):] = torch.tensor(p), 1
    pos = _positions(mask)
    seqs = [list(p) for p in prompts]

    def reference(rows: list[list[int]]) -> torch.Tensor:
        L = max(len(r) for r in rows)
        x = torch.zeros((len(rows), L), dtype=torch.long)
        m = torch.zeros((len(rows), L), dtype=torch.long)
        for i, r in enumerate(rows):
            x[i, L - len(r):], m[i, L - len(r):] = torch.tensor(r), 1
        return model(input_ids=x, attention_mask=m, position_ids=_positions(m)).logits[:, -1]

    with torch.inference_mode():
        dec = lean.LeanDecoder(model, 3, P + 8)
        logits = dec.prefill(ids, mask, pos)
        assert torch.allclose(logits, reference(seqs), atol=1e-4)
        rows = [0, 0, 0, 1, 2, 2]  # 3 samples of prompt 0, 1 of prompt 1, 2 of prompt 2
        keeps = [None, [0, 1, 2, 3, 4, 5], [0, 2, 3, 5], [1, 2, 3], [0, 2], [1]]  # prompt 0's rows, then prompt 1 go
        next_pos = pos[rows, -1] + 1
        dec.select(torch.tensor(rows))
        seqs = [list(seqs[r]) for r in rows]
        for step, keep in enumerate(keeps):
            if keep is not None and len(keep) < len(seqs):
                dec.select(torch.tensor(keep))
                seqs, next_pos = [seqs[k] for k in keep], next_pos[keep]
            tok = torch.tensor([(7 * step + 3 * j) % 50 for j in range(len(seqs))])
            logits = dec.step(tok, next_pos)
            next_pos = next_pos + 1
            seqs = [s + [t] for s, t in zip(seqs, tok.tolist())]
            assert torch.allclose(logits, reference(seqs), atol=1e-4), step


def test_bfloat16_sampling_on_the_cpu_is_close_to_float32():
    """policy.dtype=bfloat16 samples through the lean decoder (oneDNN bf16 on the CPU); the logprobs it
    records stay close to the float32 model's for the same tokens (bench/bf16_cpu.py measures the gap)."""
    import copy

    from transformers import LlamaConfig, LlamaForCausalLM

    from policies import SamplingParams, lean, load_model
    from policies.hf import TransformersEngine

    _, tok = load_model(PolicyConfig(model="tiny"))
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)).eval()
    half = copy.deepcopy(model).to(torch.bfloat16)
    assert lean.supports(half)
    out = TransformersEngine(half, tok).generate(["Compute: 1 + 2", "x"], SamplingParams(n=3, max_new_tokens=20, seed=1))
    flat = [r for rs in out for r in rs]
    assert all(r.completion_ids for r in flat)
    diffs = [abs(a - b) for r, lp in zip(flat, TransformersEngine(model, tok).logprobs(flat)) for a, b in zip(r.logprobs, lp)]
    assert sum(diffs) / len(diffs) < 0.01 and max(diffs) < 0.1


@pytest.mark.parametrize("arch", ["llama-gqa", "qwen2"])
def test_lean_sampling_matches_transformers_forward(arch):
    """The lean decoder (policies/lean.py) gives the tokens and logprobs of model(...) with a cache,
    for grouped-query attention and for q/k/v biases, with prompts of different lengths."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    from policies import PolicyConfig, SamplingParams, lean, load_model
    from policies.hf import TransformersEngine

    _, tok = load_model(PolicyConfig(model="tiny"))
    torch.manual_seed(0)
    kw = dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=256, eos_token_id=tok.eos_token_id,
              pad_token_id=tok.pad_token_id)
    model = (LlamaForCausalLM(LlamaConfig(**kw)) if arch == "llama-gqa" else Qwen2ForCausalLM(Qwen2Config(**kw))).eval()
    if arch == "qwen2":
        assert model.model.layers[0].self_attn.q_proj.bias is not None
    assert lean.supports(model)
    prompts = ["Compute: 1 + 2", "Compute: 345 - 67 and more text", "x"]
    params = SamplingParams(n=3, temperature=1.0, max_new_tokens=24, seed=5)
    a = TransformersEngine(model, tok, lean=True).generate(prompts, params)
    b = TransformersEngine(model, tok, lean=False).generate(prompts, params)
    for ra, rb in zip([r for o in a for r in o], [r for o in b for r in o]):
        assert ra.completion_ids == rb.completion_ids
        assert max(abs(x - y) for x, y in zip(ra.logprobs, rb.logprobs)) < 1e-5
