"""Scenario: the local embedding model (all-MiniLM-L6-v2 in llama.cpp), its speed and its quality.

    python -m bench.local_embeddings [--passages 256] [--haystack 2000] [--json out.json]

Needs the local model group (``python -m chat.local.install``). Starts the local model server as
``manage.py serve`` does (SmolLM2 and all-MiniLM-L6-v2 in one process, on a free loopback port)
and measures:

- throughput: ``--passages`` passages of about 300 tokens (Parley's chunk size) embedded in
  batches of 64 (``PARLEY_EMBEDDING_BATCH``) over HTTP, as the ingestion job sends them:
  passages per second and tokens per second, and the server's resident memory;
- quality on bench/retrieval.py's labelled set, made the same way (200 passages stating "The
  access code of project Xyz is ...", asked "Which access code does project Xyz use?") in a
  smaller haystack (``--haystack`` passages in all: embedding 100,000 passages with this model
  on two cores would take the better part of an hour): the share of questions whose passage is
  in the top 5 of ``passages_search`` (vectors fused with keywords, SQLite) and of the vector
  ranking alone, with the local model's vectors and, on the same passages, with the fake
  upstream's hashed-word vectors that bench/retrieval.py uses;
- the same on a small set of questions in other words than their passage (the handbook of
  tests/chat/local/test_local_model_embeddings.py), where keywords do not help.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
import urllib.request

import numpy as np

from bench import prompt_build
from bench.harness import Section, Target, emit, table

BATCH = 64
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _embed(base_url: str, model: str, texts: list[str]) -> tuple[list[list[float]], int]:
    request = urllib.request.Request(
        f"{base_url}/embeddings",
        data=json.dumps({"model": model, "input": texts}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with _opener.open(request, timeout=600) as response:
        body = json.loads(response.read())
    return [item["embedding"] for item in body["data"]], body["usage"]["prompt_tokens"]


def _embed_all(base_url: str, model: str, texts: list[str]) -> tuple[np.ndarray, int, float]:
    vectors, tokens, begun = [], 0, time.perf_counter()
    for start in range(0, len(texts), BATCH):
        part, used = _embed(base_url, model, texts[start : start + BATCH])
        vectors.extend(part)
        tokens += used
    return np.asarray(vectors, dtype=np.float32), tokens, time.perf_counter() - begun


def _labelled(n: int, rng: random.Random) -> tuple[list[str], list[tuple[int, str]]]:
    from bench.retrieval import FACTS, _name

    facts = set(rng.sample(range(n), min(FACTS, n)))
    texts, labelled = [], []
    for i in range(n):
        if i in facts:
            project, code = _name(rng), f"{_name(rng)}-{rng.randint(100, 999)}"
            texts.append(f"The access code of project {project} is {code}. " + prompt_build._text(rng, 20, 40))
            labelled.append((i, f"Which access code does project {project} use?"))
        else:
            texts.append(prompt_build._text(rng, 30, 60))
    return texts, labelled


def _hit_rates(texts, labelled, vectors, question_vectors) -> dict:
    """Top-5 of passages_search (fused, SQLite) and of the vector ranking alone."""
    from django.contrib.auth import get_user_model

    from chat.models import Chunk, Conversation, Document
    from chat.services.retrieval import MATRICES, passages_search

    MATRICES.clear()
    user = get_user_model().objects.create_user(f"bench-{len(vectors[0])}-{time.monotonic_ns()}", password=None)
    conversation = Conversation.objects.create(owner=user, has_documents=True)
    document = Document.objects.create(
        owner=user, conversation=conversation, name="handbook.pdf", kind="pdf", status=Document.Status.READY
    )
    Chunk.objects.bulk_create(
        [
            Chunk(document=document, owner=user, ordinal=i, page=1, text=t, tokens=len(t) // 4, embedding=v)
            for i, (t, v) in enumerate(zip(texts, vectors, strict=True))
        ],
        batch_size=2000,
    )
    ordinal = dict(Chunk.objects.filter(document=document).values_list("pk", "ordinal"))
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    fused = alone = 0
    for (expected, question), q in zip(labelled, question_vectors, strict=True):
        ranked = passages_search(owner_id=user.pk, conversation_id=conversation.pk, query=question, vector=q)
        fused += expected in {ordinal.get(pk) for pk in ranked[:5]}
        scores = unit @ (np.asarray(q) / np.linalg.norm(q))
        alone += expected in set(np.argsort(-scores)[:5].tolist())
    return {"fused": fused / len(labelled), "vector": alone / len(labelled)}


def run(passages: int, haystack: int) -> dict:
    from django.core.management import call_command

    from chat.local import gguf, install
    from chat.local.server import LocalServer, free_port
    from tests.chat.local.test_local_model_embeddings import PASSAGES, QUESTIONS
    from tests.fakeupstream.embeddings import embed as hashed

    call_command("migrate", verbosity=0, interactive=False)
    chat_path, embedding_path = install.bundled_model_path(), install.embedding_model_path()
    if chat_path is None or embedding_path is None:
        raise SystemExit("the local model group is not installed: python -m chat.local.install")
    server = LocalServer(model=gguf.model_info(chat_path), embedding=gguf.model_info(embedding_path), port=free_port())
    server.start()
    try:
        started = server.wait_ready(timeout=180)
        rss_idle = server.rss_bytes() or 0
        model = server.embedding.model_id
        rng = random.Random(14)
        # About 300 tokens a passage, Parley's chunk size (PARLEY_DOCUMENT_CHUNK_TOKENS).
        throughput_texts = [prompt_build._text(rng, 220, 230) for _ in range(passages)]
        _embed(server.base_url, model, throughput_texts[:4])  # warm
        _, tokens, seconds = _embed_all(server.base_url, model, throughput_texts)
        rss_busy = server.rss_bytes() or 0

        texts, labelled = _labelled(haystack, random.Random(14))
        local_vectors, _, haystack_seconds = _embed_all(server.base_url, model, texts)
        local_questions, _, _ = _embed_all(server.base_url, model, [q for _, q in labelled])
        local = _hit_rates(texts, labelled, local_vectors, local_questions)
        words = _hit_rates(
            texts,
            labelled,
            np.asarray([hashed(t) for t in texts], dtype=np.float32),
            [hashed(q) for _, q in labelled],
        )
        handbook = list(QUESTIONS)
        p, _, _ = _embed_all(server.base_url, model, PASSAGES)
        q, _, _ = _embed_all(server.base_url, model, handbook)
        p /= np.linalg.norm(p, axis=1, keepdims=True)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        top1 = sum(int(np.argmax(p @ q[i])) == QUESTIONS[question] for i, question in enumerate(handbook))
        hashed_p = np.asarray([hashed(t) for t in PASSAGES])
        hashed_top1 = sum(
            int(np.argmax(hashed_p @ np.asarray(hashed(question)))) == QUESTIONS[question] for question in handbook
        )
    finally:
        server.stop()
    return {
        "start_seconds": started,
        "passages": passages,
        "tokens": tokens,
        "seconds": seconds,
        "passages_per_second": passages / seconds,
        "tokens_per_second": tokens / seconds,
        "rss_idle_mib": rss_idle / 2**20,
        "rss_busy_mib": rss_busy / 2**20,
        "haystack": haystack,
        "haystack_seconds": haystack_seconds,
        "questions": len(labelled),
        "local_fused_top5": local["fused"],
        "local_vector_top5": local["vector"],
        "hashed_fused_top5": words["fused"],
        "hashed_vector_top5": words["vector"],
        "handbook_questions": len(handbook),
        "handbook_local_top1": top1,
        "handbook_hashed_top1": hashed_top1,
        "load": os.getloadavg()[0],
    }


def measure(passages: int, haystack: int) -> dict:
    with prompt_build.throwaway_database(f"parley_bench_le_{os.getpid()}", "sqlite"):
        return run(passages, haystack)


def report(r: dict) -> Section:
    markdown = (
        f"all-MiniLM-L6-v2 (float16 GGUF) in llama.cpp's server beside SmolLM2, started in {r['start_seconds']:.1f} s; "
        f"load average {r['load']:.1f} at the end.\n\n"
        + table(
            ["what", "measured"],
            [
                [
                    f"{r['passages']} passages of ~300 tokens, batches of {BATCH}",
                    f"{r['passages_per_second']:.1f} passages/s ({r['tokens_per_second']:.0f} tokens/s)",
                ],
                [
                    "server memory (RSS) after start / after embedding",
                    f"{r['rss_idle_mib']:.0f} / {r['rss_busy_mib']:.0f} MiB",
                ],
                [
                    f"top-5, bench/retrieval.py's {r['questions']} questions in {r['haystack']:,} passages, fused",
                    f"{r['local_fused_top5']:.0%} local vectors, {r['hashed_fused_top5']:.0%} hashed words",
                ],
                [
                    "same, vector ranking alone",
                    f"{r['local_vector_top5']:.0%} local vectors, {r['hashed_vector_top5']:.0%} hashed words",
                ],
                [
                    f"top-1 of {r['handbook_questions']}, questions in other words (vectors alone)",
                    f"{r['handbook_local_top1']}/{r['handbook_questions']} local, "
                    f"{r['handbook_hashed_top1']}/{r['handbook_questions']} hashed words",
                ],
            ],
        )
    )
    return Section(
        key="local-embeddings",
        title="Local embeddings (all-MiniLM-L6-v2 in llama.cpp)",
        markdown=markdown,
        targets=[
            Target("local embedding throughput", "reported", f"{r['passages_per_second']:.1f} passages/s", None),
            Target("top-5 with local vectors (fused)", "reported", f"{r['local_fused_top5']:.0%}", None),
        ],
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=256)
    parser.add_argument("--haystack", type=int, default=2000)
    parser.add_argument("--json", help="also write the section as JSON here (bench.run)")
    args = parser.parse_args(argv)
    emit([report(measure(args.passages, args.haystack))], args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
