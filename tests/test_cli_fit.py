"""``bayesflow-nets fit``: NetCDF round trip and clear errors for bad input."""

import json
from pathlib import Path

import arviz as az
import numpy as np
import pytest

from bayesflow_nets.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "models"

MODEL_SRC = """
import numpyro
import numpyro.distributions as dist


def model(y, scale=1.0):
    mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
    with numpyro.plate("obs", len(y)):
        numpyro.sample("y", dist.Normal(mu, scale), obs=y)
"""


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "m.py"
    path.write_text(MODEL_SRC)
    data = tmp_path / "d.json"
    data.write_text(json.dumps({"y": [0.5, 1.5, 1.0, 2.0]}))
    return path, data


def test_fit_nuts_writes_netcdf_that_arviz_reads(tmp_path, capsys):
    out = tmp_path / "es.nc"
    rc = main(
        [
            "fit",
            f"{EXAMPLES / 'eight_schools.py'}:model_noncentered",
            "--data",
            str(EXAMPLES / "eight_schools.json"),
            "--method",
            "nuts",
            "--out",
            str(out),
            "--num-warmup",
            "150",
            "--num-samples",
            "100",
            "--num-chains",
            "2",
            "--quiet",
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "ess_bulk" in printed and "theta[7]" in printed
    idata = az.from_netcdf(out)
    assert {"posterior", "sample_stats", "observed_data"} <= set(idata.groups())
    assert idata.posterior["theta"].dims == ("chain", "draw", "school")
    assert idata.posterior["mu"].shape == (2, 100)
    assert np.all(np.isfinite(idata.posterior["theta"].values))
    np.testing.assert_array_equal(
        idata.observed_data["y"].values, [28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0]
    )
    assert idata.posterior.attrs["sampler"] == "nuts"


def _err(capsys):
    return capsys.readouterr().err


def test_fit_missing_model_file(tmp_path, capsys):
    rc = main(["fit", str(tmp_path / "nope.py:model"), "--out", str(tmp_path / "o.nc")])
    assert rc == 2 and "model file" in _err(capsys)


def test_fit_missing_model_name(model_file, tmp_path, capsys):
    path, data = model_file
    rc = main(["fit", f"{path}:other", "--data", str(data), "--out", str(tmp_path / "o.nc")])
    err = _err(capsys)
    assert rc == 2 and "no model named 'other'" in err and "'model'" in err


def test_fit_bad_json(model_file, tmp_path, capsys):
    path, _ = model_file
    bad = tmp_path / "bad.json"
    bad.write_text("{'y': [1, 2]")
    rc = main(["fit", f"{path}:model", "--data", str(bad), "--out", str(tmp_path / "o.nc")])
    assert rc == 2 and "is not valid JSON" in _err(capsys)


def test_fit_data_keys_the_model_does_not_accept(model_file, tmp_path, capsys):
    path, _ = model_file
    data = tmp_path / "extra.json"
    data.write_text(json.dumps({"y": [1.0], "sigma": 2.0}))
    rc = main(["fit", f"{path}:model", "--data", str(data), "--out", str(tmp_path / "o.nc")])
    err = _err(capsys)
    assert rc == 2 and "data keys ['sigma'] are not arguments of the model" in err


def test_fit_missing_required_argument_and_missing_data_file(model_file, tmp_path, capsys):
    path, _ = model_file
    rc = main(["fit", f"{path}:model", "--out", str(tmp_path / "o.nc")])
    assert rc == 2 and "the model needs arguments ['y']" in _err(capsys)
    rc = main(["fit", f"{path}", "--data", "nope.json", "--out", str(tmp_path / "o.nc")])
    assert rc == 2 and "data file 'nope.json' does not exist" in _err(capsys)


def test_fit_help_and_bad_method(capsys):
    with pytest.raises(SystemExit) as info:
        main(["fit", "--help"])
    assert info.value.code == 0
    assert "--method {emf,nuts,neutra}" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main(["fit", "m.py", "--method", "gibbs", "--out", "o.nc"])
    assert info.value.code == 2


@pytest.mark.slow
@pytest.mark.parametrize("method", ["emf", "neutra"])
def test_fit_emf_and_neutra_round_trip(model_file, tmp_path, method):
    path, data = model_file
    out = tmp_path / f"{method}.nc"
    argv = ["fit", f"{path}:model", "--data", str(data), "--method", method, "--out", str(out)]
    argv += ["--num-warmup", "200", "--num-samples", "200", "--num-steps", "1000", "--quiet"]
    assert main(argv) == 0
    idata = az.from_netcdf(out)
    mu = idata.posterior["mu"].values
    # closed form: prior N(0, 10²), unit noise, four observations summing to 5
    prec = 1 / 100 + 4
    np.testing.assert_allclose(mu.mean(), 5.0 / prec, atol=0.1)
    np.testing.assert_allclose(mu.std(), prec**-0.5, rtol=0.15)
