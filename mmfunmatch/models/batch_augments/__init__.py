from .uniform_mixup import UniformMixup

__all__ = ['UniformMixup']
