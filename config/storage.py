"""Static files storage: whitenoise's compressed, hashed storage, aware of ES module imports.

The chat page is plain ES modules (static/app/) importing each other by relative path.
Django rewrites those import paths to the hashed file names only when
``support_js_module_import_aggregation`` is on; without it a module would load its imports
by their unhashed names, which the year-long cache would keep stale after an upgrade.
"""

from whitenoise.storage import CompressedManifestStaticFilesStorage


class StaticFilesStorage(CompressedManifestStaticFilesStorage):
    support_js_module_import_aggregation = True
