"""``vx cache stats | prune | clear``."""

from __future__ import annotations

import json
import sys

from vx import Config, UsageError
from vx_cache.settings import parse_age, parse_size
from vx_cache.store import LocalCache


def _human(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def run_cache_command(config: Config, store: LocalCache) -> int:
    action = config.option.cache_action
    if action == "stats":
        return _stats(config, store)
    if action == "prune":
        return _prune(config, store)
    count = store.clear()
    sys.stdout.write(
        f"removed {count} cache entr{'y' if count == 1 else 'ies'} from {store.directory}\n"
    )
    return 0


def _stats(config: Config, store: LocalCache) -> int:
    entries = store.entries()
    runs = store.recent_runs()
    hits = sum(run[0] for run in runs)
    remote = sum(run[1] for run in runs)
    misses = sum(run[2] for run in runs)
    lookups = hits + misses
    total_size = sum(entry.size for entry in entries)
    document = {
        "directory": str(store.directory),
        "entries": len(entries),
        "total_size": total_size,
        "recent_runs": len(runs),
        "hits": hits,
        "remote_hits": remote,
        "misses": misses,
        "hit_rate": round(hits / lookups, 4) if lookups else None,
    }
    if config.option.json:
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return 0
    rate = f"{document['hit_rate']:.0%}" if lookups else "n/a"
    sys.stdout.write(
        f"cache:     {store.directory}\n"
        f"entries:   {len(entries)}\n"
        f"size:      {_human(total_size)}\n"
        f"hit rate:  {rate} over the last {len(runs)} run(s) "
        f"({hits} hits, {remote} from remote, {misses} misses)\n"
    )
    return 0


def _prune(config: Config, store: LocalCache) -> int:
    option = config.option
    try:
        max_size = parse_size(option.max_size) if option.max_size is not None else None
        max_age = parse_age(option.max_age) if option.max_age is not None else None
    except ValueError as exc:
        raise UsageError(f"vx cache prune: {exc}") from None
    if max_size is None and max_age is None:
        settings = config.section("cache")
        max_size, max_age = settings.max_size, settings.max_age
    if max_size is None and max_age is None:
        raise UsageError(
            "vx cache prune: give --max-size and/or --max-age "
            "(or set max_size / max_age in [tool.vx.cache])"
        )
    evicted = store.prune(max_size, max_age, dry=option.dry)
    verb = "would evict" if option.dry else "evicted"
    for entry in evicted:
        sys.stdout.write(f"{verb} {entry.key[:16]} {entry.task_id} ({_human(entry.size)})\n")
    freed = sum(entry.size for entry in evicted)
    sys.stdout.write(
        f"{verb} {len(evicted)} entr{'y' if len(evicted) == 1 else 'ies'}, {_human(freed)}\n"
    )
    return 0
