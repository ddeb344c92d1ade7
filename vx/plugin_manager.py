"""Plugin discovery and loading, and the typed facade over ``pm.hook``."""

from __future__ import annotations

import importlib
import os
import sys
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast, final

import pluggy

from vx import hookspecs
from vx.errors import PluginError, UsageError, VxError

if TYPE_CHECKING:
    from pydantic import BaseModel

    from vx.caching import CacheLayer, CacheResult, CacheStatus
    from vx.cli import CommandRegistry, Parser
    from vx.config import Config
    from vx.entrypoints import EntryPoint
    from vx.execution import CommandSpec, Executor, RunInfo, TaskResult
    from vx.graph import Task, TaskGraph
    from vx.workspace import Workspace

__all__ = ["ESSENTIAL_PLUGINS", "HookRelay", "PluginInfo", "VxPluginManager"]

#: The distribution whose ``vx`` entry points are the built-in plugins.
BUILTIN_DISTRIBUTION = "vx-build"
#: Built-ins without which no run can work; ``-p no:NAME`` refuses to block them.
ESSENTIAL_PLUGINS = frozenset({"workspace", "executor", "run"})


@dataclass(frozen=True, slots=True)
class PluginInfo:
    """Where a loaded plugin came from."""

    name: str
    module: str
    source: str
    """``builtin``, ``entrypoint``, ``VX_PLUGINS``, ``tool.vx.plugins``, ``-p`` or ``register``."""
    distribution: str | None = None
    version: str | None = None

    @property
    def origin(self) -> str:
        if self.distribution:
            return f"{self.distribution} {self.version}"
        return f"module {self.module}"


@final
class VxPluginManager(pluggy.PluginManager):
    """A pluggy ``PluginManager`` that knows where each plugin came from."""

    def __init__(self, trace: Callable[[str], None] | None = None) -> None:
        super().__init__("vx")
        self.generation = 0
        """Bumped by every registration change (observer lists are cached per generation)."""
        self.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        self.disabled_observers: set[str] = set()
        self.blocked_names: set[str] = set()
        """Plugins blocked with ``-p no:NAME``; their settings are accepted unvalidated."""
        self._trace = trace
        self.hooks = HookRelay(self)
        # Historic: every plugin, registered now or later, may add hook specifications.
        self.hook.vx_addhooks.call_historic(kwargs={"pluginmanager": self})

    # -- registration ------------------------------------------------------

    def register(self, plugin: object, name: str | None = None) -> str | None:
        self.generation += 1
        return super().register(plugin, name)

    def unregister(self, plugin: object | None = None, name: str | None = None) -> Any:
        self.generation += 1
        return super().unregister(plugin, name)

    def add_hookspecs(self, module_or_class: types.ModuleType | type) -> None:
        self.generation += 1
        super().add_hookspecs(module_or_class)

    def parse_hookspec_opts(
        self, module_or_class: types.ModuleType | type, name: str
    ) -> pluggy.HookspecOpts | None:
        """As for implementations: in a module, only a function marked with the ``vx``
        hookspec marker can be a specification (``vx.hookspecs`` is parsed by every
        invocation, and by every request of the warm server)."""
        if isinstance(module_or_class, types.ModuleType):
            value = vars(module_or_class).get(name)
            if not isinstance(value, types.FunctionType) or not hasattr(value, "vx_spec"):
                return None
        return super().parse_hookspec_opts(module_or_class, name)

    def parse_hookimpl_opts(self, plugin: object, name: str) -> pluggy.HookimplOpts | None:
        """pluggy looks up every attribute of a plugin with ``inspect.getattr_static``; for a
        module (every entry-point plugin) only a function in its namespace that carries the
        ``vx`` hookimpl marker can be a hook, so the rest (imports, constants, classes) are
        skipped with a dictionary lookup; for other objects the same holds for the functions
        of their class (a hook implemented as a method)."""
        if isinstance(plugin, type):
            return super().parse_hookimpl_opts(plugin, name)
        if isinstance(plugin, types.ModuleType):
            value = vars(plugin).get(name)
        else:  # an instance (the terminal reporter, the event log ...): its class's methods
            value = _static_attribute(plugin, name)
        if isinstance(value, types.FunctionType):
            if getattr(value, "vx_impl", None) is None:
                return None
        elif not isinstance(value, (staticmethod, classmethod, types.MethodType)):
            return None
        return super().parse_hookimpl_opts(plugin, name)

    def register_plugin(self, plugin: object, info: PluginInfo) -> None:
        """Register ``plugin`` unless its name is blocked; record where it came from."""
        if self.is_blocked(info.name) or self.has_plugin(info.name):
            return
        if self.is_registered(plugin):
            # Already loaded under another name, e.g. ``-p acme_vx.hooks`` for a plugin
            # that its entry point ``acme`` loaded: pluggy would raise ValueError.
            if self._trace:
                already = self.get_name(plugin)
                self._trace(f"plugin '{info.name}' is already registered as '{already}'")
            return
        try:
            self.register(plugin, name=info.name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin '{info.name}' ({info.origin}) is invalid: {exc}") from exc
        self.infos[info.name] = info
        if self._trace:
            self._trace(f"registered plugin '{info.name}' from {info.origin} ({info.source})")

    def block(self, names: Iterable[str]) -> None:
        """Apply ``-p no:NAME``: the plugin is never registered, whatever its source."""
        for name in names:
            self.blocked_names.add(name)
            if name in ESSENTIAL_PLUGINS:
                raise UsageError(
                    f"-p no:{name}: plugin '{name}' is built into vx and every run needs it, "
                    "so it cannot be blocked"
                )
            self.set_blocked(name)

    def load_entrypoints(self, autoload: bool) -> None:
        """Built-ins (entry points of vx-build) always; other distributions' unless disabled."""
        from vx.entrypoints import vx_entry_points

        builtin: list[EntryPoint] = []
        third_party: list[EntryPoint] = []
        for ep in vx_entry_points("vx"):
            (builtin if ep.distribution == BUILTIN_DISTRIBUTION else third_party).append(ep)
        for ep in builtin:
            self._load_entrypoint(ep, "builtin")
        if autoload:
            for ep in sorted(third_party, key=lambda e: e.name):
                self._load_entrypoint(ep, "entrypoint")

    def _load_entrypoint(self, ep: EntryPoint, source: str) -> None:
        if self.is_blocked(ep.name) or self.has_plugin(ep.name):
            return
        info = PluginInfo(ep.name, ep.value, source, ep.distribution, ep.version)
        try:
            plugin = ep.load()
        except Exception as exc:
            raise PluginError(
                f"plugin '{ep.name}' ({info.origin}, entry point {ep.value}) failed to import: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        self.register_plugin(plugin, info)

    def import_plugins(self, modules: Iterable[str], source: str) -> None:
        """Import and register plugin modules named by ``VX_PLUGINS``, config or ``-p``."""
        for spec in modules:
            module_name = spec.strip()
            if not module_name or self.is_blocked(module_name) or self.has_plugin(module_name):
                continue
            try:
                module = importlib.import_module(module_name)
            except ImportError as exc:
                missing = getattr(exc, "name", None)
                if missing and missing != module_name and not module_name.startswith(f"{missing}."):
                    # The plugin module exists; one of its own imports is missing.
                    hint = (
                        f"the plugin needs '{missing}', which is not importable from "
                        f"{sys.executable}; install it"
                    )
                else:
                    hint = (
                        f"'{module_name}' is not importable from {sys.executable}; install the "
                        "distribution that provides it, or fix the module name"
                    )
                raise PluginError(
                    f"plugin '{module_name}' (from {source}) failed to import: {exc}; {hint}"
                ) from exc
            except Exception as exc:
                dist, version = _distribution_of(module_name)
                origin = f"{dist} {version}" if dist else f"module {module_name}"
                raise PluginError(
                    f"plugin '{module_name}' ({origin}, from {source}) failed to import: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            dist, version = _distribution_of(module_name)
            self.register_plugin(
                module, PluginInfo(module_name, module_name, source, dist, version)
            )

    def info_for(self, plugin_name: str | None) -> str:
        """A human description of ``plugin_name`` for error messages."""
        if plugin_name is None:
            return "a plugin"
        info = self.infos.get(plugin_name)
        return f"plugin '{plugin_name}' ({info.origin})" if info else f"plugin '{plugin_name}'"

    def check_required(self, requirements: Iterable[str], file: str) -> None:
        """Fail early, naming the fix, when a ``required_plugins`` entry is not installed."""
        requirements = list(requirements)
        if not requirements:
            return
        from importlib.metadata import PackageNotFoundError, version

        from packaging.requirements import InvalidRequirement, Requirement

        for index, text in enumerate(requirements):
            key = f"tool.vx.required_plugins[{index}]"
            try:
                requirement = Requirement(text)
            except InvalidRequirement as exc:
                raise PluginError(f"{file}: {key}: invalid requirement '{text}': {exc}") from exc
            try:
                installed = version(requirement.name)
            except PackageNotFoundError:
                raise PluginError(
                    f"{file}: {key}: required plugin '{text}' is not installed; "
                    f"fix: pip install '{text}'"
                ) from None
            if requirement.specifier and not requirement.specifier.contains(
                installed, prereleases=True
            ):
                raise PluginError(
                    f"{file}: {key}: required plugin '{text}' is installed at version "
                    f"{installed}, which does not satisfy it; fix: pip install '{text}'"
                )


def _static_attribute(plugin: object, name: str) -> object:
    """``name`` as stored on ``plugin`` or its classes (what ``inspect.getattr_static``
    finds, without its descriptor handling)."""
    instance_vars = getattr(plugin, "__dict__", None)
    if instance_vars is not None and name in instance_vars:
        return instance_vars[name]
    for klass in type(plugin).__mro__:
        if name in klass.__dict__:
            return klass.__dict__[name]
    return None


def _distribution_of(module_name: str) -> tuple[str | None, str | None]:
    from importlib.metadata import packages_distributions, version

    top = module_name.partition(".")[0]
    dists = packages_distributions().get(top)
    if not dists:
        return None, None
    return dists[0], version(dists[0])


def blame(exc: BaseException, impls: Iterable[pluggy.HookImpl]) -> str | None:
    """Name of the plugin whose hook implementation raised ``exc``, if any."""
    codes = {id(impl.function.__code__): impl.plugin_name for impl in impls}
    tb = exc.__traceback__
    culprit = None
    while tb is not None:
        name = codes.get(id(tb.tb_frame.f_code))
        if name is not None:
            culprit = name
        tb = tb.tb_next
    return culprit


#: An observer implementation: plugin name, function, argument names.
_Observer = tuple[str, Callable[..., object], tuple[str, ...]]


@final
class HookRelay:
    """Typed facade over ``pm.hook``: the kernel's calls are type-checked.

    Exceptions other than :class:`VxError` raised by a plugin become a
    :class:`PluginError` naming the plugin and its distribution. Observer
    hooks (``notify_*``) isolate failures instead.
    """

    def __init__(self, pm: VxPluginManager) -> None:
        self._pm = pm
        self._observers: dict[str, tuple[int, tuple[_Observer, ...]]] = {}

    def _call(self, name: str, **kwargs: Any) -> Any:
        caller: pluggy.HookCaller = getattr(self._pm.hook, name)
        try:
            return caller(**kwargs)
        except VxError:
            raise
        except Exception as exc:
            plugin = blame(exc, caller.get_hookimpls())
            raise PluginError(
                f"{self._pm.info_for(plugin)} raised in {name}: {type(exc).__name__}: {exc}"
            ) from exc

    # bootstrap / config
    def add_commands(self, registry: CommandRegistry) -> None:
        self._call("vx_add_commands", registry=registry)

    def addoption(self, parser: Parser) -> None:
        self._pm.hook.vx_addoption.call_historic(kwargs={"parser": parser})

    def settings_models(self) -> dict[str, type[BaseModel]]:
        models: dict[str, type[BaseModel]] = {}
        for mapping in self._call("vx_settings_models"):
            if mapping:
                models.update(mapping)
        return models

    def task_settings(self) -> dict[str, object]:
        """Plugin-owned task keys; a key declared twice is an error naming both plugins."""
        keys: dict[str, object] = {}
        owners: dict[str, str] = {}
        caller = self._pm.hook.vx_task_settings
        for impl in reversed(caller.get_hookimpls()):
            declared = cast("Mapping[str, object] | None", impl.function()) or {}
            for key, annotation in declared.items():
                if key in owners:
                    raise PluginError(
                        f"task key '{key}' is declared by plugins '{owners[key]}' and "
                        f"'{impl.plugin_name}'; disable one with -p no:NAME"
                    )
                owners[key] = impl.plugin_name
                keys[key] = annotation
        return keys

    def configure(self, config: Config) -> None:
        self._call("vx_configure", config=config)

    def unconfigure(self, config: Config) -> None:
        self._call("vx_unconfigure", config=config)

    # workspace and graph
    def load_workspace(self, root: Path, config: Config) -> Workspace | None:
        return cast("Workspace | None", self._call("vx_load_workspace", root=root, config=config))

    def modify_graph(self, graph: TaskGraph, config: Config) -> None:
        self._call("vx_modify_graph", graph=graph, config=config)

    # hashing and caching
    def hash_components(
        self, graph: TaskGraph, config: Config
    ) -> dict[str, dict[str, str | bytes]]:
        """Every task's plugin key components: one ``vx_graph_hash_components`` call for the
        graph, then ``vx_task_hash_components`` per task only if some plugin implements it."""
        components: dict[str, dict[str, str | bytes]] = {}
        for batch in self._call("vx_graph_hash_components", graph=graph, config=config):
            for task_id, mapping in (batch or {}).items():
                if mapping:
                    components.setdefault(task_id, {}).update(mapping)
        if self._pm.hook.vx_task_hash_components.get_hookimpls():
            for task in graph:
                for mapping in self._call("vx_task_hash_components", task=task, config=config):
                    if mapping:
                        components.setdefault(task.id, {}).update(mapping)
        return components

    def cache_layers(self, config: Config) -> list[CacheLayer]:
        """Every plugin's layers, in hook call order; each must be a :class:`CacheLayer`."""
        from vx.caching import CacheLayer

        layers: list[CacheLayer] = []
        for impl in reversed(self._pm.hook.vx_cache_layers.get_hookimpls()):
            result = self._call_impl(impl, "vx_cache_layers", config=config)
            for layer in result or ():
                if not isinstance(layer, CacheLayer):
                    raise PluginError(
                        f"{self._pm.info_for(impl.plugin_name)} returned {layer!r} from "
                        "vx_cache_layers: cache layers must subclass vx.CacheLayer"
                    )
                layers.append(layer)
        return layers

    # scheduling and execution
    def task_priorities(self, graph: TaskGraph, config: Config) -> Mapping[str, float] | None:
        return cast(
            "Mapping[str, float] | None",
            self._call("vx_task_priorities", graph=graph, config=config),
        )

    def executor(self, config: Config) -> Executor:
        executor = self._call("vx_executor", config=config)
        if executor is None:
            raise PluginError("no plugin provides an executor (is the 'executor' plugin loaded?)")
        return cast("Executor", executor)

    def _call_impl(self, impl: pluggy.HookImpl, name: str, **kwargs: object) -> Any:
        """Call one plugin's implementation; its exceptions become a :class:`PluginError`."""
        try:
            return impl.function(**{arg: kwargs[arg] for arg in impl.argnames})
        except VxError:
            raise
        except Exception as exc:
            raise PluginError(
                f"{self._pm.info_for(impl.plugin_name)} raised in {name}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def wrap_command(self, task: Task, spec: CommandSpec, config: Config) -> CommandSpec:
        for impl in reversed(self._pm.hook.vx_wrap_command.get_hookimpls()):
            result = self._call_impl(impl, "vx_wrap_command", task=task, spec=spec, config=config)
            if result is not None:
                spec = cast("CommandSpec", result)
        return spec

    # observers
    def _observers_of(self, name: str) -> tuple[_Observer, ...]:
        """The implementations of observer hook ``name``, in call order (cached until a
        plugin is registered or unregistered: the hot path calls these per task)."""
        generation = self._pm.generation
        cached = self._observers.get(name)
        if cached is None or cached[0] != generation:
            caller: pluggy.HookCaller = getattr(self._pm.hook, name)
            impls = reversed(caller.get_hookimpls())
            observers = tuple((i.plugin_name, i.function, tuple(i.argnames)) for i in impls)
            cached = self._observers[name] = (generation, observers)
        return cached[1]

    def notify(self, name: str, **kwargs: Any) -> None:
        """Call observer hook ``name`` on each plugin; one that raises is disabled for the run."""
        disabled = self._pm.disabled_observers
        for plugin_name, function, argnames in self._observers_of(name):
            if disabled and plugin_name in disabled:
                continue
            try:
                function(*[kwargs[arg] for arg in argnames])
            except Exception as exc:
                disabled.add(plugin_name)
                from vx import _log

                _log.warning(
                    f"{self._pm.info_for(plugin_name)} raised in {name} and is disabled "
                    f"for the rest of this run: {type(exc).__name__}: {exc}"
                )

    def run_start(self, run: RunInfo, graph: TaskGraph, config: Config) -> None:
        self.notify("vx_run_start", run=run, graph=graph, config=config)

    def task_start(self, task: Task, run: RunInfo) -> None:
        self.notify("vx_task_start", task=task, run=run)

    def task_cache(self, task: Task, status: CacheStatus, details: CacheResult) -> None:
        self.notify("vx_task_cache", task=task, status=status, details=details)

    def task_output(self, task: Task, data: bytes) -> None:
        self.notify("vx_task_output", task=task, data=data)

    def task_finish(self, result: TaskResult, run: RunInfo) -> None:
        self.notify("vx_task_finish", result=result, run=run)

    def cache_upload(
        self, task: Task, layer: str, key: str, duration_ms: float, error: str | None
    ) -> None:
        self.notify(
            "vx_cache_upload",
            task=task,
            layer=layer,
            key=key,
            duration_ms=duration_ms,
            error=error,
        )

    def run_finish(self, run: RunInfo, config: Config) -> None:
        self.notify("vx_run_finish", run=run, config=config)


def plugin_hooks(pm: VxPluginManager, plugin: object) -> list[str]:
    """Names of the hooks ``plugin`` implements, sorted."""
    return sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])


def env_plugin_list() -> list[str]:
    """Plugin modules named by ``VX_PLUGINS`` (comma-separated)."""
    return [name for name in os.environ.get("VX_PLUGINS", "").split(",") if name.strip()]
