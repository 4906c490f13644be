"""River estimators from a declarative spec, checked against each class's signature before use.

A spec is a list of steps, each ``["module.Class", {parameters}]`` naming a class of River (and
only of River: nothing else can be imported this way). All steps but the last must be
transformers, the last a classifier; together they make a ``compose.Pipeline``. A parameter whose
value is itself a step, or a list of steps, is built the same way, so optimisers, losses, drift
detectors and the models inside ensembles are written as data too. Class labels are booleans, so
the keys ``"true"`` and ``"false"`` of an object (e.g. a sampler's ``desired_dist``) stand for them.
Every estimator that takes a ``seed`` and is not given one gets the engine's, so runs repeat.

>>> model = build_pipeline(
...     [["preprocessing.StandardScaler", {}], ["forest.AMFClassifier", {"n_estimators": 2}]], seed=1
... )
>>> [type(step).__name__ for step in model.steps.values()]
['StandardScaler', 'AMFClassifier']
>>> build_pipeline([["forest.AMFClassifier", {"trees": 2}]], seed=1)
Traceback (most recent call last):
...
detector.engine.estimators.SpecError: [0] forest.AMFClassifier: unknown parameter 'trees' (takes ...)
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Sequence
from typing import Any

from river import base, compose

_ROOT = "river"
_LABEL_KEYS = {"true": True, "false": False}
_PLAIN = {
    "int": int,
    "float": float,
    "bool": bool,
    "str": str,
    "None": type(None),
    "dict": dict,
    "list": list,
}


class SpecError(ValueError):
    """A spec that does not describe a River estimator that can be built, said in one line."""


def build_pipeline(spec: Sequence[Any], seed: int) -> base.Classifier | compose.Pipeline:
    """A fresh, untrained classifier for ``spec``; raises :class:`SpecError` if it cannot be one."""
    if isinstance(spec, str | bytes) or not isinstance(spec, Sequence) or not spec:
        raise SpecError('expected a list of steps, each ["module.Class", {parameters}]')
    steps = [_build_step(step, f"[{index}]", seed) for index, step in enumerate(spec)]
    *transformers, last = steps
    for index, step in enumerate(transformers):
        if not isinstance(step, base.Transformer):
            raise SpecError(
                f"[{index}] {spec[index][0]}: not a transformer, so it cannot come before the model"
            )
    if not isinstance(last, base.Classifier):
        raise SpecError(f"[{len(steps) - 1}] {spec[-1][0]}: the last step must be a classifier")
    return compose.Pipeline(*steps) if transformers else last


def is_step(value: Any) -> bool:
    """Whether ``value`` has the shape of a step: a class name and its parameters."""
    return (
        isinstance(value, list | tuple)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], dict)
    )


def _build_step(step: Any, where: str, seed: int) -> Any:
    if not is_step(step):
        raise SpecError(f'{where}: expected ["module.Class", {{parameters}}], got {step!r}')
    name, parameters = step
    cls = _river_class(name, where)
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):
        raise SpecError(f"{where} {name}: its parameters cannot be read") from None
    accepted = signature.parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    for parameter in parameters:
        if parameter not in accepted and not takes_any:
            names = ", ".join(
                p for p, kind in accepted.items() if kind.kind is not inspect.Parameter.VAR_POSITIONAL
            )
            raise SpecError(f"{where} {name}: unknown parameter {parameter!r} (takes {names or 'none'})")
    for parameter, value in parameters.items():
        expected = _plain_types(accepted[parameter]) if parameter in accepted else None
        if expected is not None and not is_step(value) and not _is_a(value, expected):
            wanted = " or ".join(sorted(kind.__name__ for kind in expected))
            raise SpecError(f"{where} {name}: {parameter} must be {wanted}, got {value!r}")
    arguments = {key: _value(value, f"{where}.{key}", seed) for key, value in parameters.items()}
    if "seed" in accepted and "seed" not in arguments:
        arguments["seed"] = seed
    try:
        return cls(**arguments)
    except Exception as error:  # a River constructor refusing a value: any type is possible
        raise SpecError(
            f"{where} {name}: {str(error).splitlines()[0] if str(error) else type(error).__name__}"
        ) from None


def _plain_types(parameter: inspect.Parameter) -> set[type] | None:
    """The JSON types a parameter takes, where its annotation (or, without one, its default) says so
    in plain types only; None when anything else may do (a River object, a union with one)."""
    annotation = parameter.annotation
    if annotation is inspect.Parameter.empty:
        default = parameter.default
        return {type(default)} if type(default) in (bool, int, float, str) else None
    names = [part.strip() for part in str(annotation).split("|")] if isinstance(annotation, str) else []
    if not names or any(part not in _PLAIN for part in names):
        return None
    return {_PLAIN[part] for part in names}


def _is_a(value: Any, expected: set[type]) -> bool:
    """JSON's view of types: an integer is also a float, a boolean is never a number."""
    if isinstance(value, bool):
        return bool in expected
    if isinstance(value, int) and float in expected:
        return True
    return type(value) in expected or (value is None and type(None) in expected)


def _value(value: Any, where: str, seed: int) -> Any:
    """A parameter's value: steps and lists of steps are built, objects' label keys become booleans."""
    if is_step(value):
        return _build_step(value, where, seed)
    if isinstance(value, list | tuple) and value and all(is_step(item) for item in value):
        return build_pipeline(value, seed) if len(value) > 1 else _build_step(value[0], where, seed)
    if isinstance(value, dict):
        return {
            _LABEL_KEYS.get(key, key): _value(item, f"{where}.{key}", seed) for key, item in value.items()
        }
    return value


def _river_class(name: str, where: str) -> type:
    """The River class called ``name`` ("forest.AMFClassifier" or "river.forest.AMFClassifier")."""
    dotted = name.removeprefix(f"{_ROOT}.")
    module_name, _, class_name = dotted.rpartition(".")
    parts = dotted.split(".")
    if not module_name or any(not part.isidentifier() or part.startswith("_") for part in parts):
        raise SpecError(f"{where}: {name!r} is not a River class name such as 'forest.AMFClassifier'")
    try:
        module = importlib.import_module(f"{_ROOT}.{module_name}")
    except ImportError:
        raise SpecError(f"{where}: unknown River module {module_name!r} in {name!r}") from None
    cls = getattr(module, class_name, None)
    if not inspect.isclass(cls) or not cls.__module__.startswith(f"{_ROOT}."):
        raise SpecError(f"{where}: unknown River class {name!r}")
    return cls
