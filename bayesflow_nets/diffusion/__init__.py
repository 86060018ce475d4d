"""Diffusion-score primitives (MATH.md §5): schedules, parametrisations, DSM, score nets,
samplers with Gaussian late start, exact empirical (Hopfield) scores, score-Jacobian spectra and
critical times. A primitive layer: imports no method or workflow module."""

from ._capacity import (
    CapacityCurve as CapacityCurve,
    capacity_curve as capacity_curve,
    corrupt as corrupt,
    hopfield_recall as hopfield_recall,
    random_patterns as random_patterns,
    score_recall as score_recall,
)
from ._critical import (
    data_lambda_max as data_lambda_max,
    equal_norm_critical_variance as equal_norm_critical_variance,
    two_delta_critical_variance as two_delta_critical_variance,
    vp_bimodality_theta as vp_bimodality_theta,
    vp_reverse_sde_critical_theta as vp_reverse_sde_critical_theta,
)
from ._empirical import (
    empirical_denoiser as empirical_denoiser,
    empirical_log_density as empirical_log_density,
    empirical_score as empirical_score,
    hopfield_energy as hopfield_energy,
    hopfield_energy_constant as hopfield_energy_constant,
    hopfield_update as hopfield_update,
)
from ._late_start import (
    GaussianStart as GaussianStart,
    LateStartSweep as LateStartSweep,
    critical_start_time as critical_start_time,
    gaussian_late_start as gaussian_late_start,
    late_start_sweep as late_start_sweep,
    streaming_moments as streaming_moments,
)
from ._losses import dsm_loss as dsm_loss
from ._nets import (
    ScoreMLP as ScoreMLP,
    ScoreUNet as ScoreUNet,
    sinusoidal_embedding as sinusoidal_embedding,
)
from ._parametrisation import (
    PARAMETRISATIONS as PARAMETRISATIONS,
    as_score_fn as as_score_fn,
    convert as convert,
    denoiser_from_eps as denoiser_from_eps,
    denoiser_from_score as denoiser_from_score,
    eps_from_denoiser as eps_from_denoiser,
    eps_from_score as eps_from_score,
    score_from_denoiser as score_from_denoiser,
    score_from_eps as score_from_eps,
)
from ._samplers import (
    ddim_sample as ddim_sample,
    ddpm_sample as ddpm_sample,
    euler_maruyama_sample as euler_maruyama_sample,
    pndm_sample as pndm_sample,
    probability_flow_sample as probability_flow_sample,
    time_grid as time_grid,
)
from ._schedules import (
    AbstractSchedule as AbstractSchedule,
    DDPMSchedule as DDPMSchedule,
    VESchedule as VESchedule,
    VPSchedule as VPSchedule,
    alpha_bar_to_ve_time as alpha_bar_to_ve_time,
    ve_time_to_alpha_bar as ve_time_to_alpha_bar,
    ve_to_vp as ve_to_vp,
    vp_to_ve as vp_to_ve,
)
from ._spectra import (
    OuterBasis as OuterBasis,
    SpectralGap as SpectralGap,
    StanczukResult as StanczukResult,
    core_spectrum as core_spectrum,
    gap_intrinsic_dimension as gap_intrinsic_dimension,
    lanczos_eigh as lanczos_eigh,
    linear_manifold_spectrum as linear_manifold_spectrum,
    low_rank_spectrum as low_rank_spectrum,
    marchenko_pastur_edges as marchenko_pastur_edges,
    outer_basis as outer_basis,
    randomized_svd as randomized_svd,
    score_jacobian as score_jacobian,
    score_jacobian_spectrum as score_jacobian_spectrum,
    score_jacobian_topk as score_jacobian_topk,
    spectra_over_time as spectra_over_time,
    spectral_gap as spectral_gap,
    spectral_phases as spectral_phases,
    stanczuk_intrinsic_dimension as stanczuk_intrinsic_dimension,
    symmetric_eigvalsh as symmetric_eigvalsh,
    two_variance_gap as two_variance_gap,
    two_variance_t_max as two_variance_t_max,
)
