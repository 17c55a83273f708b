from .validate import ConfigError, validate_config

__all__ = ['ConfigError', 'validate_config']
