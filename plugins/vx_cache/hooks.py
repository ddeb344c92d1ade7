"""Hooks of the ``cache`` plugin (thin: the store and commands import lazily)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import vx
from vx import CacheSource, CacheStatus

if TYPE_CHECKING:
    import argparse

    from pydantic import BaseModel

    from vx import CacheLayer, CommandRegistry, Config, RunInfo
    from vx_cache.store import LocalCache

#: The run's local store, created on first use.
_STORE: vx.StashKey[LocalCache] = vx.StashKey()


@vx.hookimpl
def vx_settings_models() -> dict[str, type[BaseModel]]:
    from vx_cache.settings import CacheSettings

    return {"cache": CacheSettings}


def cache_dir(config: Config) -> Path:
    """``VX_CACHE_DIR``, else ``[tool.vx.cache] dir``, else ``.vx/cache`` (workspace-relative)."""
    root = config.require_root()
    configured = os.environ.get("VX_CACHE_DIR") or config.section("cache").dir
    return (root / configured).resolve() if configured else root / ".vx" / "cache"


def local_cache(config: Config) -> LocalCache:
    """The run's :class:`LocalCache` (one per invocation)."""
    store = config.stash.get(_STORE)
    if store is None:
        from vx_cache.store import LocalCache

        store = LocalCache(cache_dir(config))
        config.stash[_STORE] = store
    return store


@vx.hookimpl
def vx_cache_layers(config: Config) -> list[CacheLayer]:
    return [local_cache(config)]


@vx.hookimpl
def vx_run_finish(run: RunInfo, config: Config) -> None:
    """Record hit statistics, then prune when ``max_size`` / ``max_age`` are configured."""
    store = config.stash.get(_STORE)
    if store is None or run.replay:
        return
    hits = remote = misses = 0
    for result in run.results.values():
        status = result.cache.status
        if status == CacheStatus.HIT:
            hits += 1
            remote += result.cache.source == CacheSource.REMOTE
        elif status == CacheStatus.MISS:
            misses += 1
    store.record_run(run.run_id, hits, remote, misses)
    settings = config.section("cache")
    if settings.max_size is not None or settings.max_age is not None:
        store.prune(settings.max_size, settings.max_age)


@vx.hookimpl
def vx_unconfigure(config: Config) -> None:
    store = config.stash.pop(_STORE)
    if store is not None:
        store.close()


@vx.hookimpl
def vx_add_commands(registry: CommandRegistry) -> None:
    registry.add(
        "cache",
        help="inspect and maintain the local cache (stats, prune, clear)",
        handler=_cache_command,
        configure=_configure_parser,
    )


def _configure_parser(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="cache_action", metavar="ACTION", required=True)
    stats = actions.add_parser("stats", help="entries, total size and hit rate of recent runs")
    stats.add_argument("--json", action="store_true", help="print JSON")
    prune = actions.add_parser("prune", help="evict least recently used entries")
    prune.add_argument("--max-size", help="keep at most this much (e.g. 5GB; B/KB/MB/GB/TB)")
    prune.add_argument("--max-age", help="evict entries unused for this long (e.g. 7d; s/m/h/d/w)")
    prune.add_argument("--dry", action="store_true", help="only print what would be evicted")
    actions.add_parser("clear", help="remove every entry")


def _cache_command(config: Config) -> int:
    from vx_cache.commands import run_cache_command

    return run_cache_command(config, local_cache(config))
