"""``bayesflow-nets fit FILE.py:NAME --data DATA.json --method emf|nuts|neutra --out OUT.nc``.

Loads a NumPyro model function from a Python file, its keyword arguments from a JSON object
(lists become ``jnp`` arrays), fits it with AutoEMF VI, BlackJAX NUTS or NeuTra (NUTS warped by
a fitted AutoEMF), writes the ``arviz.InferenceData`` as NetCDF and prints ``az.summary``.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import runpy
import sys
import time
from pathlib import Path
from typing import Any

METHODS = ("emf", "nuts", "neutra")

FIT_DESCRIPTION = """\
Fit a NumPyro model defined in a Python file and write the posterior as ArviZ NetCDF.

The model is MODEL_FILE.py:NAME (NAME defaults to 'model'): a function whose keyword
arguments are the keys of the JSON object in --data (numbers stay numbers, lists become
jax.numpy arrays; use null for an argument that should be None, e.g. unobserved y).

methods:
  emf     AutoEMF guide fitted by fit_vi; --num-chains x --num-samples guide draws
  nuts    BlackJAX window adaptation + NUTS (chains vmapped)
  neutra  fit AutoEMF (init='default'), then NUTS in the space warped by its flow (NeuTra)

example:
  bayesflow-nets fit examples/models/eight_schools.py:model \\
      --data examples/models/eight_schools.json --method nuts --out eight_schools.nc
"""


class FitInputError(Exception):
    """A user-input problem: reported on stderr with exit status 2."""


def _load_model(spec: str):
    path_str, _, name = spec.rpartition(":") if ":" in spec else (spec, "", "model")
    name = name or "model"
    path = Path(path_str)
    if path.suffix != ".py":
        raise FitInputError(
            f"model must be given as FILE.py[:NAME], got {spec!r} (the file must end in .py)."
        )
    if not path.is_file():
        raise FitInputError(f"model file {str(path)!r} does not exist.")
    try:
        namespace = runpy.run_path(str(path), run_name="__bayesflow_nets_model__")
    except Exception as err:  # the user's file failed to import: report it, don't crash
        raise FitInputError(
            f"could not run model file {str(path)!r}: {type(err).__name__}: {err}"
        ) from err
    if name not in namespace:
        found = sorted(
            k
            for k, v in namespace.items()
            if callable(v)
            and not k.startswith("_")
            and getattr(v, "__module__", None) == "__bayesflow_nets_model__"
        )
        raise FitInputError(
            f"no model named {name!r} in {str(path)!r} (functions defined there: {found}); "
            "pass FILE.py:NAME."
        )
    model = namespace[name]
    if not callable(model):
        raise FitInputError(f"{name!r} in {str(path)!r} is not callable: {type(model).__name__}.")
    return model


def _to_array(name: str, value: Any):
    import numpy as np

    if not isinstance(value, list):
        return value
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as err:
        raise FitInputError(f"data key {name!r}: could not make an array: {err}") from err
    if arr.dtype.kind not in "biuf":
        raise FitInputError(
            f"data key {name!r}: lists must hold numbers (a rectangular array), got {value!r:.80}."
        )
    return arr


def _load_data(path_str: str | None, model) -> dict[str, Any]:
    if path_str is None:
        data: dict[str, Any] = {}
    else:
        path = Path(path_str)
        if not path.is_file():
            raise FitInputError(f"data file {str(path)!r} does not exist.")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise FitInputError(f"data file {str(path)!r} is not valid JSON: {err}") from err
        if not isinstance(data, dict):
            raise FitInputError(
                f"data file {str(path)!r} must hold a JSON object (keys = model arguments), "
                f"got a {type(data).__name__}."
            )
    try:
        sig = inspect.signature(model)
    except (TypeError, ValueError):
        sig = None
    if sig is not None:
        params = sig.parameters
        takes_var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        accepted = [
            k
            for k, p in params.items()
            if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        ]
        unknown = sorted(set(data) - set(accepted))
        if unknown and not takes_var_kw:
            raise FitInputError(
                f"data keys {unknown} are not arguments of the model (it accepts {accepted})."
            )
        missing = [
            k
            for k, p in params.items()
            if p.default is inspect.Parameter.empty
            and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
            and k not in data
        ]
        if missing:
            raise FitInputError(f"the model needs arguments {missing}; add them to the data file.")
    return {k: _to_array(k, v) for k, v in data.items()}


def _fit(model, args: argparse.Namespace):
    import jax

    from .emf import AutoEMF, fit_vi
    from .infer import neutra, nuts

    key = jax.random.key(args.seed)
    k_fit, k_draw = jax.random.split(key)
    if args.method == "nuts":
        return nuts(
            model,
            rng_key=k_fit,
            num_chains=args.num_chains,
            num_warmup=args.num_warmup,
            num_samples=args.num_samples,
        )
    guide = AutoEMF(model)
    # NeuTra: the default (not Laplace) start, which funnels (no mode) need; see docs/workflow.md
    init = "default" if args.method == "neutra" else "laplace"
    result = fit_vi(
        model, guide, rng_key=k_fit, progress=not args.quiet, num_steps=args.num_steps, init=init
    )
    if args.method == "emf":
        return result.to_arviz(k_draw, args.num_samples, num_chains=args.num_chains)
    return neutra(
        model,
        guide,
        result.params,
        rng_key=k_draw,
        num_chains=args.num_chains,
        num_warmup=args.num_warmup,
        num_samples=args.num_samples,
    )


def run_fit(args: argparse.Namespace) -> int:
    """Entry point of ``bayesflow-nets fit`` (exit status 0, or 2 on bad input)."""
    try:
        for name in ("num_samples", "num_warmup", "num_chains", "num_steps"):
            if getattr(args, name) < 1:
                raise FitInputError(f"--{name.replace('_', '-')} must be >= 1.")
        out = Path(args.out)
        if out.is_dir():
            raise FitInputError(f"--out {str(out)!r} is a directory; give a file name (.nc).")
        if not out.parent.exists():
            raise FitInputError(f"the folder of --out {str(out)!r} does not exist.")
        model = _load_model(args.model)
        data = _load_data(args.data, model)
    except FitInputError as err:
        print(f"bayesflow-nets fit: error: {err}", file=sys.stderr)
        return 2
    import arviz as az
    import jax
    import jax.numpy as jnp
    import numpy as np

    t0 = time.perf_counter()
    with jax.enable_x64(args.float64):
        data = {k: jnp.asarray(v) if isinstance(v, np.ndarray) else v for k, v in data.items()}
        idata = _fit(functools.partial(model, **data), args)
    seconds = time.perf_counter() - t0
    idata.to_netcdf(str(out))
    summary = az.summary(idata, round_to=3)
    print(summary.to_string())
    print(f"method {args.method}: {seconds:.1f} s; wrote {out}")
    return 0


def add_fit_parser(sub) -> None:
    """Register the ``fit`` sub-command on an argparse sub-parser collection."""
    fit = sub.add_parser(
        "fit",
        help="fit a NumPyro model file (AutoEMF VI, NUTS or NeuTra), write ArviZ NetCDF",
        description=FIT_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fit.add_argument("model", help="the model as FILE.py:NAME (NAME defaults to 'model')")
    fit.add_argument(
        "--data", default=None, help="JSON object whose keys are the model's keyword arguments"
    )
    fit.add_argument("--method", choices=METHODS, default="nuts", help="fitting method")
    fit.add_argument("--out", required=True, help="output NetCDF file (arviz.from_netcdf reads it)")
    fit.add_argument("--seed", type=int, default=0, help="PRNG seed (default 0)")
    fit.add_argument("--num-samples", type=int, default=1000, help="draws per chain (default 1000)")
    fit.add_argument(
        "--num-warmup", type=int, default=1000, help="NUTS/NeuTra warm-up steps (default 1000)"
    )
    fit.add_argument("--num-chains", type=int, default=4, help="chains (default 4)")
    fit.add_argument(
        "--num-steps", type=int, default=6000, help="emf/neutra: maximum VI steps (default 6000)"
    )
    fit.add_argument("--float64", action="store_true", help="run in float64 (jax x64)")
    fit.add_argument("--quiet", action="store_true", help="no VI progress lines")
    fit.set_defaults(func=run_fit)
