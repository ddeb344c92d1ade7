"""Former home of keys, content hashing and file listing, split by concern into
:mod:`vx.keys`, :mod:`vx.filehash`, :mod:`vx.filelist`, :mod:`vx.gitfiles` and
:mod:`vx.cachedir`. These re-exports keep kernel-internal imports written before the split
working; new code imports from the module that owns the name (plugins: from ``vx``)."""

from __future__ import annotations

from vx.cachedir import CACHEDIR_TAG_SIGNATURE
from vx.filehash import FileHasher, digest_text
from vx.filelist import IGNORED_DIRS, IGNORED_FILES, FileLister, default_ignored
from vx.gitfiles import prefetch_listing
from vx.keys import CACHE_FORMAT, KeyBuilder, manifest_key
from vx.outputs import output_globs

__all__ = [
    "CACHEDIR_TAG_SIGNATURE",
    "CACHE_FORMAT",
    "IGNORED_DIRS",
    "IGNORED_FILES",
    "FileHasher",
    "FileLister",
    "KeyBuilder",
    "default_ignored",
    "digest_text",
    "manifest_key",
    "output_globs",
    "prefetch_listing",
]
