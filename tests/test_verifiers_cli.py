import json
import subprocess
import sys

ROWS = [
    {"completion": "so \\boxed{42}", "answer": "42", "id": "a"},
    {"completion": "<think>\\boxed{5}</think>", "answer": "5", "id": "b"},
    {"completion": "The answer is $1,234.", "answer": "1234", "id": "c"},
    {"completion": "\\boxed{\\dfrac{5^{(5^{(5^{(5^5)})}-4)}-5}{16}}", "answer": "5", "id": "d"},
    {"completion": "\\boxed{41}", "answer": "42", "id": "e"},
]


def run(args, stdin):
    return subprocess.run([sys.executable, "-m", "verifiers", *args], input=stdin, capture_output=True, text=True,
                          timeout=120)


def test_math_cli_in_order_with_bad_lines():
    lines = [json.dumps(r) for r in ROWS[:2]] + ["{not json", json.dumps({"answer": "1"}), "[1]"] + \
        [json.dumps(r) for r in ROWS[2:]]
    p = run(["math", "--timeout", "1.5"], "\n".join(lines) + "\n")
    assert p.returncode == 0, p.stderr
    out = [json.loads(line) for line in p.stdout.splitlines()]
    assert [o["status"] for o in out] == ["correct", "no_answer", "error", "error", "error", "correct", "timeout", "wrong"]
    assert out[0]["id"] == "a" and out[0]["extracted"] == "42" and out[0]["score"] == 1.0
    assert "line 3" in out[2]["details"]["error"] and "line 4" in out[3]["details"]["error"]
    assert "completion" in out[3]["details"]["error"]
    assert "verified" in p.stderr


def test_math_cli_file_and_format(tmp_path):
    f = tmp_path / "in.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in ROWS[:1]) + "\n")
    p = run(["math", str(f)], "")
    assert json.loads(p.stdout)["status"] == "correct"
    p = run(["format", "--mode", "strict"], json.dumps({"completion": "<think>a</think><answer>1</answer>"}) + "\n")
    assert json.loads(p.stdout)["status"] == "correct"


def test_cli_errors():
    p = run(["math", "/no/such/file"], "")
    assert p.returncode == 2 and "cannot read" in p.stderr
    p = run(["math", "--timeout", "0"], "")
    assert p.returncode == 2 and "timeout" in p.stderr
    p = run(["maths"], "")
    assert p.returncode == 2 and "invalid choice" in p.stderr


def test_every_subcommand_documents_its_fields():
    """--help of each subcommand names its input fields, its output fields and its exit status; the
    README's verifiers section names the same fields and options."""
    import os
    import re

    wanted = {"math": ["completion", "answer", "--workers", "--timeout", "--precision"],
              "format": ["completion", "--mode", "strict"],
              "code": ["completion", "entry_point", "test_list", "test_setup_code", "inputs", "outputs", "stdio",
                       "--backend", "--partial", "--daemon-wait"]}
    readme = open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")).read()
    section = readme[readme.index("## Verifiers"):readme.index("## Benchmarks")]
    for kind, names in wanted.items():
        p = run([kind, "--help"], "")
        assert p.returncode == 0, p.stderr
        text = re.sub(r"\s+", " ", p.stdout)
        for name in names + ["status", "score", "extracted", "details", "exit status"]:
            assert name in text, (kind, name)
        row = next(line for line in section.splitlines() if line.startswith(f"| `{kind}` |"))
        for name in names:
            assert name in row, (kind, name)
    for name in ("`status`", "`score`", "`extracted`", "`details`"):
        assert name in section
    p = run(["--help"], "")
    assert "audit" in p.stdout
