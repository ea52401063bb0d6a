"""The experiment config: schema (pydantic), loading (YAML with positions, --set) and errors."""

from dlcli.config.errors import ConfigError, ConfigIssue, SourceMap
from dlcli.config.load import load_config, load_config_text, validate_config
from dlcli.config.schema import Config, config_json_schema, resolved_yaml

__all__ = [
    "Config", "ConfigError", "ConfigIssue", "SourceMap", "config_json_schema",
    "load_config", "load_config_text", "resolved_yaml", "validate_config",
]  # fmt: skip
