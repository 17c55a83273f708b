from .kl_divergence import KLDivergenceT, kl_divergence_t
from .srd_loss import SRDLoss, soft_max_distance

__all__ = ['KLDivergenceT', 'kl_divergence_t', 'SRDLoss', 'soft_max_distance']
