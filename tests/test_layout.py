"""Our top-level package names are generic: a same-named package from another distribution (PyPI's
`verifiers`) that comes first on sys.path is refused with one line at import (envs/_layout.py)."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, tmp_path, shadow):
    fake = tmp_path / "site"
    for name in shadow:
        (fake / name).mkdir(parents=True)
        (fake / name / "__init__.py").write_text('"""a same-named package from another distribution"""\n')
    env = {**os.environ, "PYTHONPATH": str(fake)}  # first on sys.path after the script's folder
    return subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_a_shadowing_verifiers_is_one_line_at_the_command_line(tmp_path):
    p = _run(["-m", "algos.grpo", "steps=1"], tmp_path, ["verifiers"])
    assert p.returncode != 0
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    assert lines[0].startswith("error: the package 'verifiers' is imported from " + str(tmp_path / "site" / "verifiers"))
    assert "pip uninstall verifiers" in lines[0] and os.path.join(ROOT, "verifiers") in lines[0]


def test_a_shadowing_package_is_a_typed_error_in_a_library_import(tmp_path):
    code = ("import sys\ntry:\n    import envs\nexcept ImportError as e:\n    print(type(e).__name__, e)\n    sys.exit(0)\n"
            "sys.exit('imported without a word')")
    p = _run(["-c", code], tmp_path, ["policies"])
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.startswith("PackageClash the package 'policies' is imported from"), p.stdout


def test_our_own_packages_pass(tmp_path):
    p = _run(["-c", "import algos, envs, policies, sandbox, verifiers; print(policies.__rlvr_gym__ and verifiers.__rlvr_gym__)"],
             tmp_path, [])
    assert p.returncode == 0 and p.stdout.strip() == "True", p.stderr
