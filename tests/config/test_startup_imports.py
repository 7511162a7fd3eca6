"""What a daphne process imports before its first request (idle memory, docs/performance.md).

Modules that only some requests need are imported by the code that uses them: numpy (document
vectors, search by meaning), boto3 and django-storages (the S3 store), Authlib and requests
(single sign-on), segno (the two-factor QR code), pydantic (the member API), Pillow (images),
the document readers, and the tokenizer's tables. A merge that imports one of them at module
level of the reply path puts megabytes into every worker; this test names the module.
"""

from __future__ import annotations

import ast
import subprocess
import sys

from django.conf import settings

LAZY = {
    "numpy",
    "boto3",
    "botocore",
    "storages",
    "authlib",
    "requests",
    "segno",
    "pydantic",
    "PIL",
    "docx",
    "pypdf",
    "lxml",
    "bpe_openai",
    "mutagen",
}


def test_a_worker_imports_none_of_the_optional_libraries_before_its_first_request(tmp_path):
    code = (
        "import os, sys, django; django.setup(); "
        "import config.asgi; from django.urls import get_resolver; get_resolver().url_patterns; "
        "print(sorted({m.split('.')[0] for m in sys.modules}))"
    )
    environment = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_SECRET_KEY": "startup-imports-test-" + "x" * 40,
        "PARLEY_DATA_DIR": str(tmp_path / "data"),
    }
    run = {"cwd": settings.BASE_DIR, "env": environment, "capture_output": True, "text": True, "timeout": 120}
    result = subprocess.run([sys.executable, "-c", code], **run)

    assert result.returncode == 0, result.stderr
    loaded = set(ast.literal_eval(result.stdout.strip().splitlines()[-1]))
    assert {"chat", "accounts", "channels"} <= loaded  # the app itself was imported
    assert sorted(loaded & LAZY) == []
