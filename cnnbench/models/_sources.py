"""Models from outside the registry, named wherever a registry name goes:

- ``torchvision:NAME``: a torchvision classification builder, without weights;
- ``timm:NAME``: a timm model without pretrained weights (``pip install cnnbench[timm]``);
- ``package.module:callable`` or ``path/to/file.py:callable``: a user's factory, called with
  ``num_classes=`` and, where it takes them, ``input_shape=`` and the ``-o key=value`` options.

Each is wrapped in a :class:`~cnnbench.models._api.ModelInfo`, so every command treats it like a
registered model; its options are open (whatever the factory takes), typed from their text.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import importlib
import importlib.util
import inspect
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cnnbench.errors import (
    CnnbenchError,
    InvalidArgumentError,
    InvalidOptionError,
    UnknownModelError,
    first_line,
)
from cnnbench.models._info import ModelInfo
from cnnbench.models.outputs import logits_of

SOURCES = ("torchvision", "timm")


def is_external(name: str) -> bool:
    """Whether ``name`` names a model outside the registry (``SOURCE:NAME`` or ``MODULE:CALLABLE``)."""
    head, sep, tail = name.partition(":")
    return bool(sep and tail and "=" not in tail.split(":")[0]) and (
        head in SOURCES or "." in head or "/" in head or "\\" in head
    )


def split_spec(spec: str) -> tuple[str, str]:
    """``'torchvision:resnet50:dropout=0.2'`` -> ``('torchvision:resnet50', 'dropout=0.2')``: the model
    name of a compare variant, and what follows it."""
    head, _, rest = spec.partition(":")
    name, _, options = rest.partition(":")
    return f"{head}:{name}", options


@functools.cache
def external_info(name: str) -> Any:
    source, _, target = name.partition(":")
    if source == "torchvision":
        builder, family, dataset = _torchvision(target), "torchvision", "imagenet"
    elif source == "timm":
        builder, family, dataset = _timm(target), "timm", "imagenet"
    else:
        builder, family, dataset = _factory(source, target), "user", "cifar10"
    own = (
        _torchvision_input(target)
        if source == "torchvision"
        else _timm_input(target)
        if source == "timm"
        else None
    )
    return ModelInfo(name=name, builder=builder, family=family, aliases=(), default_dataset=dataset,
                     supported_inputs=(), options={}, open_options=True, default_input=own)  # fmt: skip


def _closest(name: str, names: list[str], what: str) -> UnknownModelError:
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return UnknownModelError(f"unknown {what} {name!r}{hint}")


def torchvision_names() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _torchvision_input(target: str) -> tuple[int, int, int] | None:
    """The input size torchvision's own weights of ``target`` are evaluated at (their crop size)."""
    import torchvision

    try:
        crop = torchvision.models.get_model_weights(target).DEFAULT.transforms().crop_size
        return (3, int(crop[0]), int(crop[-1]))
    except Exception:  # no weights, or transforms without a crop: the dataset's size
        return None


def _timm_input(target: str) -> tuple[int, int, int] | None:
    """The input size of timm's pretrained configuration of ``target``."""
    try:
        import timm

        size = timm.models.get_pretrained_cfg(target).input_size
        return (int(size[0]), int(size[1]), int(size[2]))
    except Exception:
        return None


def _torchvision(target: str) -> Callable[..., Any]:
    import torchvision

    if target not in torchvision_names():
        raise _closest(target, torchvision_names(), "torchvision classification model")

    def build(input_shape: tuple[int, int, int], num_classes: int, **options: Any) -> Any:
        name = f"torchvision:{target}"
        _check_options(name, options)
        # A model built for one input size (ViT: image_size; MaxViT: input_size) is built for the one asked.
        _, height, width = input_shape
        for sized in ({"image_size": height} if height == width else {}, {"input_size": (height, width)}, {}):
            if any(k in options for k in sized):
                continue
            try:
                with warnings.catch_warnings():
                    # GoogLeNet's and Inception's notice that their default initialisation will change:
                    # torchvision's plans, nothing a user of this version can act on
                    warnings.filterwarnings("ignore", "The default weight initialization", FutureWarning)
                    return torchvision.models.get_model(
                        target, weights=None, num_classes=num_classes, **sized, **options
                    )
            except TypeError as exc:
                if sized and "unexpected keyword" in str(exc) and any(k in str(exc) for k in sized):
                    continue
                raise _build_error(name, input_shape, options, exc) from None
            except CnnbenchError:
                raise
            except Exception as exc:  # a builder's own check of the input size (ValueError, AssertionError)
                raise _build_error(name, input_shape, options, exc) from None
        raise AssertionError("unreachable: the last try passes no size")

    build.__doc__ = f"torchvision's {target}, without weights."
    return _checked(build, f"torchvision:{target}")


def _timm(target: str) -> Callable[..., Any]:
    try:
        import timm
    except ImportError:
        raise UnknownModelError(
            f"timm:{target} needs timm, which is not installed: pip install timm (in a clone of cnnbench: "
            "pip install -e '.[timm]')"
        ) from None
    names = timm.list_models()
    if target not in names:
        raise _closest(target, names, "timm model")

    def build(input_shape: tuple[int, int, int], num_classes: int, **options: Any) -> Any:
        name = f"timm:{target}"
        _check_options(name, options)
        kwargs = dict(pretrained=False, num_classes=num_classes, in_chans=input_shape[0], **options)
        try:
            try:  # models with a fixed input size (ViTs) take it; the others refuse the keyword
                return timm.create_model(target, img_size=input_shape[1:], **kwargs)
            except TypeError as exc:
                if "img_size" not in str(exc):
                    raise
                return timm.create_model(target, **kwargs)
        except CnnbenchError:
            raise
        except Exception as exc:
            raise _build_error(name, input_shape, options, exc) from None

    build.__doc__ = f"timm's {target}, without pretrained weights."
    return _checked(build, f"timm:{target}")


def _factory(module: str, target: str) -> Callable[..., Any]:
    mod = _import(module)
    if not hasattr(mod, target):
        public = [n for n in dir(mod) if not n.startswith("_")]
        raise _closest(target, public, f"name in {module}")
    factory = getattr(mod, target)
    if not callable(factory):
        raise UnknownModelError(f"expected {module}:{target} to be callable, got a {type(factory).__name__}")
    return _callable_builder(factory, f"{module}:{target}", f"{target} from {module}")


def _callable_builder(factory: Callable[..., Any], label: str, about: str) -> Callable[..., Any]:
    """A registry builder of a user's factory: called with ``num_classes=``, ``input_shape=`` where it
    takes it, and the model options; what it returns is checked."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a builtin or C callable: it says nothing of what it takes
        raise UnknownModelError(f"expected {label} to be a Python callable whose parameters can be read, "
                                f"got {type(factory).__name__}") from None  # fmt: skip
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())

    def build(input_shape: tuple[int, int, int], num_classes: int, **options: Any) -> Any:
        kwargs: dict[str, Any] = {"num_classes": num_classes}
        if "input_shape" in params or takes_any:
            kwargs["input_shape"] = tuple(input_shape)
        unknown = [k for k in options if k not in params and not takes_any]
        if unknown:
            raise InvalidOptionError(
                f"unknown option {unknown[0]!r} for {label}: expected one of its parameters "
                f"{', '.join(p for p in params if p not in ('num_classes', 'input_shape')) or '(none)'}"
            )
        try:
            return factory(**kwargs, **options)
        except CnnbenchError:
            raise
        except Exception as exc:  # the user's code failed: its own words, in one line, with what it was given
            given = f" with {_options_text(options)}" if options else ""
            raise UnknownModelError(
                f"expected {label} to build a model{given}, got {type(exc).__name__}: {first_line(exc)}"
            ) from None

    build.__doc__ = (inspect.getdoc(factory) or about).splitlines()[0]
    return _checked(build, label)


# Models handed over as Python objects (cnnbench's Python API): an nn.Module or a callable that makes one,
# under the name its rows carry. They live in this process only: a job for another process cannot name one.
_OBJECTS: dict[str, ModelInfo] = {}


def object_info(name: str) -> ModelInfo | None:
    """The model registered under ``name`` as a Python object in this process, if any."""
    return _OBJECTS.get(name)


def register_object(name: str, model: Any, taken: Callable[[str], bool]) -> bool:
    """Register ``model`` (an ``nn.Module``, or a callable that returns one given ``num_classes`` and,
    where it takes them, ``input_shape`` and options) under ``name``; ``taken`` says whether a name
    belongs to the registry. A module is copied for each build, so training never changes the caller's
    object, and trains from its own weights; a callable builds from the run's seed. Registering a name
    again replaces what it named (a notebook cell run twice): True then, and what was counted of the name
    must be forgotten."""
    import copy
    import re

    import torch

    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", name):
        raise InvalidArgumentError(
            f"expected a name for the model's rows (up to 100 letters, digits, '_', '.' and '-'), got {name!r}"
        )
    if taken(name):
        raise InvalidArgumentError(
            f"expected a name for the model's rows that the registry does not use, got {name!r}, a registered "
            "model (name=... gives it another)"
        )
    if isinstance(model, torch.nn.Module):
        template = model

        def build(input_shape: tuple[int, int, int], num_classes: int, **options: Any) -> Any:
            if options:
                raise InvalidOptionError(f"expected no options for {name}, an nn.Module object (a callable that "
                                         f"makes it takes options), got {_options_text(options)}")  # fmt: skip
            return copy.deepcopy(template).to(torch.get_default_device())

        build.__doc__ = (inspect.getdoc(type(model)) or type(model).__name__).splitlines()[0]
        builder = _checked(build, name)
    elif callable(model):
        builder = _callable_builder(model, name, f"{name}, a Python callable")
    else:
        raise InvalidArgumentError(
            f"expected a model name, an nn.Module or a callable that makes one, got {type(model).__name__}"
        )
    replaced = name in _OBJECTS
    _OBJECTS[name] = ModelInfo(name=name, builder=builder, family="python", aliases=(), default_dataset="cifar10",
                               supported_inputs=(), options={}, open_options=True)  # fmt: skip
    return replaced


def _import(module: str) -> Any:
    """A module by dotted name, or by the path of a .py file."""
    path = Path(module)
    try:
        if module.endswith(".py") or "/" in module:
            if not path.is_file():
                raise UnknownModelError(f"expected a Python file at {module}, got no such file")
            spec = importlib.util.spec_from_file_location(f"cnnbench_user_{path.stem}", path)
            mod = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = mod
            spec.loader.exec_module(mod)
            return mod
        # As `python -m` would: the modules of the folder the command runs in can be named.
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.insert(0, os.getcwd())
        return importlib.import_module(module)
    except UnknownModelError:
        raise
    except SystemExit as exc:  # a script's sys.exit() at import: it is not a module of models
        raise UnknownModelError(
            f"could not import {module}: it called sys.exit({exc.code!r}) while importing"
        ) from None
    except Exception as exc:  # the user's module failed to import: say why in one line
        reason = first_line(exc)
        raise UnknownModelError(f"could not import {module}: {type(exc).__name__}: {reason}") from None


# Keywords cnnbench passes to a zoo builder itself: a model is built without weights, for --num-classes
# classes and the channels of -i.
SET_BY_CNNBENCH = {
    "weights": "models are built without weights", "progress": "models are built without weights",
    "pretrained": "models are built without weights", "pretrained_cfg": "models are built without weights",
    "num_classes": "give --num-classes", "in_chans": "give -i CxHxW", "device": "give --device",
    "dtype": "give --precision",
}  # fmt: skip


def _options_text(options: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in options.items())


def _check_options(name: str, options: dict[str, Any]) -> None:
    """Refuse what cnnbench sets itself, and a key the model does not take (where its parameters are
    known: a model class without ``**kwargs``), naming the options it does take."""
    for key in options:
        if key in SET_BY_CNNBENCH:
            raise InvalidOptionError(
                f"expected options of {name} other than {key}, which cnnbench sets itself "
                f"({SET_BY_CNNBENCH[key]}); cnnbench list --options {name} lists the others"
            )
    if not options:
        return
    accepted, open_ended = zoo_options(name)
    unknown = [k for k in options if k not in accepted]
    if unknown and not open_ended:
        raise InvalidOptionError(
            f"unknown option {unknown[0]!r} for {name}: expected one of {', '.join(accepted) or '(none)'}"
        )


@functools.cache
def zoo_options(name: str) -> tuple[dict[str, Any], bool]:
    """The options a torchvision or timm model takes (its builder's keywords and its class's parameters,
    with their defaults, less what cnnbench sets), read from a model built once with none; and whether it
    takes other keywords as well (``**kwargs``)."""
    source, _, target = name.partition(":")
    if source == "torchvision":
        import torchvision

        builder = torchvision.models.get_model_builder(target)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "The default weight initialization", FutureWarning)
            model = torchvision.models.get_model(target, weights=None)
    else:
        import timm

        builder = timm.models.model_entrypoint(target)
        model = timm.create_model(target, pretrained=False)
    accepted: dict[str, Any] = {}
    open_ended = False
    for function in (type(model).__init__, builder):
        for key, param in inspect.signature(function).parameters.items():
            if param.kind is inspect.Parameter.VAR_KEYWORD:
                open_ended = open_ended or function is type(model).__init__
            elif (
                key != "self"
                and param.kind is not inspect.Parameter.VAR_POSITIONAL
                and key not in SET_BY_CNNBENCH
            ):
                accepted.setdefault(key, None if param.default is inspect.Parameter.empty else param.default)
    return accepted, open_ended


def open_options(name: str) -> list[tuple[str, str]]:
    """``list --options`` of a model from outside the registry: each option it takes and its default."""
    source, _, target = name.partition(":")
    if source in SOURCES:
        accepted, _open = zoo_options(name)
    else:
        params = inspect.signature(getattr(_import(source), target)).parameters.items()
        accepted = {k: None if p.default is inspect.Parameter.empty else p.default for k, p in params
                    if k not in ("num_classes", "input_shape") and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}  # fmt: skip
    return [(key, "-" if default is None else str(default).lower()) for key, default in accepted.items()]


def _build_error(name: str, input_shape: tuple[int, int, int], options: dict[str, Any],
                 exc: BaseException) -> CnnbenchError:  # fmt: skip
    """A zoo builder's refusal in one line: of its options where there are some, else of the input size."""
    from cnnbench.errors import InputSizeError

    reason = f"{type(exc).__name__}: {first_line(exc)}"
    if options:
        error: CnnbenchError = InvalidOptionError(f"{name} cannot be built with {_options_text(options)} at "
                                                  f"input {'x'.join(map(str, input_shape))}: {reason}")  # fmt: skip
    else:
        error = InputSizeError(f"{name} cannot take input {'x'.join(map(str, input_shape))}: {reason}")
    error.builder_raised = True  # type: ignore[attr-defined]  # build_meta asks the CPU again
    return error


def _checked(build: Callable[..., Any], name: str) -> Callable[..., Any]:
    """The builder, with its result checked: an nn.Module whose output is (batch, classes)."""

    @functools.wraps(build)
    def checked(input_shape: tuple[int, int, int], num_classes: int, **options: Any) -> Any:
        return check_model(build(input_shape, num_classes, **options), input_shape, num_classes, name)

    return checked


def check_model(model: Any, input_shape: tuple[int, int, int], num_classes: int, name: str) -> Any:
    """``model`` if it is an nn.Module whose output (on the device its weights are on) is (batch,
    classes); else one line saying what it is instead."""
    import torch

    if not isinstance(model, torch.nn.Module):
        raise UnknownModelError(f"expected {name} to return an nn.Module, got {type(model).__name__}")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    try:
        with torch.no_grad():
            out = model.eval()(torch.zeros(2, *input_shape, device=device))
    except Exception as exc:
        from cnnbench.errors import InputSizeError

        raise InputSizeError(
            f"{name} cannot take input {'x'.join(map(str, input_shape))}: {first_line(exc)}"
        ) from None
    shape = tuple(logits_of(out, name).shape)
    if shape != (2, num_classes):
        raise UnknownModelError(
            f"expected {name} to output (batch, {num_classes}), got {shape or type(out).__name__}"
        )
    return model.train()


def list_external(pattern: str) -> list[str]:
    """``torchvision:*resnet*`` -> the torchvision names that match, prefixed; likewise for timm."""
    source, _, glob = pattern.partition(":")
    if source == "torchvision":
        names = torchvision_names()
    elif source == "timm":
        try:
            import timm
        except ImportError:
            raise UnknownModelError(
                "listing timm models needs timm, which is not installed: pip install timm (in a clone of "
                "cnnbench: pip install -e '.[timm]')"
            ) from None
        names = timm.list_models()
    else:
        raise UnknownModelError(
            f"expected a pattern like 'torchvision:*resnet*' or 'timm:vit*', got {pattern!r}"
        )
    return [f"{source}:{n}" for n in names if fnmatch.fnmatch(n, glob or "*")]
