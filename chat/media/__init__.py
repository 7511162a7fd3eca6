"""Private media storage: files members upload and models produce.

``types`` decides what a file is (from its bytes, never from its name) and cleans the name a
member gave it; ``storage`` is the door to ``STORAGES["media"]`` (a folder or an S3 bucket);
``services`` save and delete files within the limits from settings; ``selectors`` read them
for their owner only; ``signals`` delete a stored file when its row goes, however it goes.
The view that serves them is chat.web.media.
"""
