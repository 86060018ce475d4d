"""CLI smoke-and-behaviour tests with tiny settings."""

import pytest

from bayesflow_nets.cli import main


def test_demo_flow_beats_gaussian(capsys):
    rc = main(["demo", "--density", "--epochs", "8", "--n-train", "3000", "--quiet"])
    out = capsys.readouterr().out
    assert "held-out NLL" in out
    assert rc == 0  # the flow's held-out NLL is below the Gaussian's


def test_bench_unknown_name(tmp_path, capsys):
    assert main(["bench", "nope", "--dir", str(tmp_path)]) == 2
    assert "no benchmark named 'nope'" in capsys.readouterr().err


def test_requires_command():
    with pytest.raises(SystemExit):
        main([])


@pytest.mark.slow
def test_demo_eight_schools_matches_nuts(capsys):
    assert main(["demo", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "mean (EMF)" in out and "mean (NUTS)" in out
