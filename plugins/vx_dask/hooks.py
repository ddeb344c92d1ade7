"""Hooks of the ``dask`` plugin (thin: ``distributed`` is imported only when the Dask executor
is used)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import vx

if TYPE_CHECKING:
    from pydantic import BaseModel
    from vx_remote.target import RemoteTarget

    from vx import Config, Executor, Parser, RunInfo, TaskGraph
    from vx_dask.executor import DaskExecutor

_EXECUTOR: vx.StashKey[DaskExecutor] = vx.StashKey()
_SCHEMES = ("dask://", "tcp://", "tls://")


@vx.hookimpl
def vx_settings_models() -> dict[str, type[BaseModel]]:
    from vx_dask.settings import DaskSettings

    return {"dask": DaskSettings}


@vx.hookimpl
def vx_addoption(parser: Parser) -> None:
    parser.add_option(
        "--executor",
        metavar="URL",
        command="run",
        help="where commands run: 'local' (default) or a Dask scheduler, dask://host:8786 "
        "(default: [tool.vx.dask] scheduler)",
    )


def scheduler_address(config: Config) -> str | None:
    """The Dask scheduler to use, or None for local execution."""
    option = getattr(config.option, "executor", None)
    if option == "local":
        return None
    value: str | None = option or config.section("dask").scheduler
    if not value:
        return None
    where = "--executor" if option else f"{config.root_file}: tool.vx.dask.scheduler"
    if "://" in value and not value.startswith(_SCHEMES):
        raise vx.UsageError(
            f"{where}: {value!r} is not a Dask scheduler address; expected 'local' or "
            "dask://host:port (tcp:// and tls:// are accepted too)"
        )
    if value.startswith("dask://"):
        value = "tcp://" + value.removeprefix("dask://")
    elif "://" not in value:
        value = "tcp://" + value
    return value


@vx.hookimpl(tryfirst=True)
def vx_executor(config: Config) -> Executor | None:
    address = scheduler_address(config)
    if address is None:
        return None
    import importlib.util

    if importlib.util.find_spec("distributed") is None:
        raise vx.ConfigError(
            f"the Dask executor ({address}) needs Dask distributed, which is not installed; "
            f"run: pip install 'vx-build[dask]'  (Python: {sys.executable})"
        )
    from vx_remote.target import remote_target

    from vx_dask.checkout import CheckoutError, changes, revision, toplevel
    from vx_dask.executor import DaskExecutor

    root = config.root_file.parent
    target = _writable_remote(config, remote_target(config))
    try:
        top = toplevel(root)
        modified = changes(top, untracked=True)
        head = revision(top)
    except CheckoutError as exc:
        raise vx.ConfigError(
            f"a distributed run needs a git checkout (workers check out the same commit): {exc}"
        ) from None
    if modified:
        shown = ", ".join(modified[:8]) + (f" (and {len(modified) - 8} more)" * (len(modified) > 8))
        raise vx.ConfigError(
            f"uncommitted changes in {top}: {shown}. Dask workers run the committed revision "
            f"{head[:12]}, so these changes would not be what runs (and their results would be "
            "cached under keys that include them): commit or stash them (git stash -u), add "
            "generated files to .gitignore, or run without --executor"
        )
    plugin = sys.modules[__name__]
    local = config.pluginmanager.subset_hook_caller("vx_executor", remove_plugins=[plugin])(
        config=config
    )
    executor = DaskExecutor(
        address=address,
        settings=config.section("dask"),
        target=target,
        revision=head,
        subdir=root.resolve().relative_to(top.resolve()).as_posix() or ".",
        root=root,
        requested=set(getattr(config.option, "tasks", None) or ()),
        local=local,
    )
    previous = config.stash.get(_EXECUTOR)
    if previous is not None:  # `vx watch` asks for an executor per run
        previous.close()
    config.stash[_EXECUTOR] = executor
    return executor


def _writable_remote(config: Config, target: RemoteTarget | str) -> RemoteTarget:
    why = "Dask workers share dependency outputs and results through the remote cache, and"
    if isinstance(target, str):
        raise vx.ConfigError(f"{why} there is none: {target} (see docs/remote-cache.md)")
    if not (target.read and target.write):
        raise vx.ConfigError(
            f"{why} [tool.vx.remote] has read = {str(target.read).lower()}, write = "
            f"{str(target.write).lower()}; a distributed run needs both",
            file=str(config.root_file),
            key="tool.vx.remote",
        )
    spec = getattr(config.option, "cache", None)
    access = vx.run_options(config.option).cache if spec else None
    if access is not None:
        remote = access.get("remote")
        if remote is None or not (remote.read and remote.write):
            raise vx.UsageError(
                f"--cache={spec}: {why} this turns off its reads or writes; keep remote:rw"
            )
    return target


@vx.hookimpl
def vx_run_start(run: RunInfo, graph: TaskGraph, config: Config) -> None:
    executor = config.stash.get(_EXECUTOR)
    if executor is not None:
        executor.use_graph(graph.tasks)


@vx.hookimpl
def vx_unconfigure(config: Config) -> None:
    executor = config.stash.pop(_EXECUTOR)
    if executor is not None:
        executor.close()
