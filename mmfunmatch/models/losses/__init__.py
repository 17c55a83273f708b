from .kl_divergence import KLDivergenceT, kl_divergence_t

__all__ = ['KLDivergenceT', 'kl_divergence_t']
