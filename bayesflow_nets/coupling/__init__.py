"""Delayed network couplings: simulator + NumPyro model, Kalman likelihood, hybrid VI, rDCM (MATH.md §4)."""

from ._hybrid import (
    CouplingPosterior as CouplingPosterior,
    HybridVI as HybridVI,
    rdcm_posterior as rdcm_posterior,
    reverse_kl_posterior as reverse_kl_posterior,
)
from ._kalman import (
    kalman_log_likelihood as kalman_log_likelihood,
    kalman_log_likelihood_params as kalman_log_likelihood_params,
    measurement_autocovariance as measurement_autocovariance,
    stationary_covariance as stationary_covariance,
    whittle_log_likelihood as whittle_log_likelihood,
)
from ._measurement import (
    MeasurementPosterior as MeasurementPosterior,
    SummaryNet as SummaryNet,
    node_features as node_features,
    train_measurement_posterior as train_measurement_posterior,
)
from ._model import (
    CouplingModel as CouplingModel,
    CouplingParams as CouplingParams,
    check_data as check_data,
    coupling_numpyro_model as coupling_numpyro_model,
    double_gamma_hrf as double_gamma_hrf,
    fractional_shift as fractional_shift,
    input_drive as input_drive,
    log_joint as log_joint,
    measurement_kernel as measurement_kernel,
    observe as observe,
    sample_prior as sample_prior,
    simulate as simulate,
    simulate_latent as simulate_latent,
    stabilise as stabilise,
)
from ._rdcm import RDCMResult as RDCMResult, rdcm as rdcm
from ._reverse_kl import (
    GaussianVIResult as GaussianVIResult,
    GaussianVIState as GaussianVIState,
    ReverseKLResult as ReverseKLResult,
    conditional_log_evidence as conditional_log_evidence,
    fit_conditional_couplings as fit_conditional_couplings,
    fit_gaussian_vi as fit_gaussian_vi,
    gaussian_vi_init as gaussian_vi_init,
    gaussian_vi_step as gaussian_vi_step,
    hp_from_unconstrained as hp_from_unconstrained,
    hp_to_unconstrained as hp_to_unconstrained,
    laplace_gaussian as laplace_gaussian,
    mode_step_size as mode_step_size,
    reverse_kl_vi as reverse_kl_vi,
)
