"""Config precedence (file < env < flag), validation errors naming file and key, secret masking."""

from __future__ import annotations

from pathlib import Path

import pytest

from lifelong_cli.config import load_config
from lifelong_cli.errors import ConfigError, WorkspaceNotFoundError
from lifelong_cli.ops.init import EXAMPLE


def _ws(tmp_path: Path, text: str) -> Path:
    (tmp_path / "llctl.yaml").write_text(text)
    return tmp_path


def test_example_config_is_valid_and_documents_every_key(tmp_path):
    import yaml

    from lifelong_cli.config import Settings

    cfg = load_config(explicit=EXAMPLE, env={}, cwd=tmp_path)
    example_keys = yaml.safe_load(EXAMPLE.read_text())

    def keys(model_cls, prefix=""):
        out = set()
        for name, f in model_cls.model_fields.items():
            ann = f.annotation
            if isinstance(ann, type) and hasattr(ann, "model_fields") and name not in ("features",):
                out |= keys(ann, f"{prefix}{name}.")
            else:
                out.add(prefix + name)
        return out

    leaves = keys(Settings)

    def present(d, prefix=""):
        out = set()
        for k, v in d.items():
            if isinstance(v, dict) and prefix + k not in leaves:
                out |= present(v, f"{prefix}{k}.")
            else:
                out.add(prefix + k)
        return out

    assert leaves == present(example_keys)
    assert cfg.settings.model.name == "demo"


def test_env_overrides_file_and_flag_overrides_env(tmp_path):
    ws = _ws(tmp_path, "drift:\n  alpha: 0.01\n")
    assert load_config(env={}, cwd=ws).settings.drift.alpha == 0.01
    assert load_config(env={"LLCTL_DRIFT__ALPHA": "0.02"}, cwd=ws).settings.drift.alpha == 0.02
    cfg = load_config(env={"LLCTL_DRIFT__ALPHA": "0.02"}, overrides={"drift.alpha": "0.03"}, cwd=ws)
    assert cfg.settings.drift.alpha == 0.03
    assert cfg.sources["drift.alpha"] == "flag"


def test_explicit_config_wins_over_local_file(tmp_path):
    ws = _ws(tmp_path, "model: {name: local}\n")
    other = tmp_path / "sub"
    other.mkdir()
    (other / "prod.yaml").write_text("model: {name: prod}\n")
    assert load_config(explicit=other / "prod.yaml", env={}, cwd=ws).settings.model.name == "prod"
    assert load_config(env={"LLCTL_CONFIG": str(other / "prod.yaml")}, cwd=ws).settings.model.name == "prod"


def test_unknown_key_names_file_and_key(tmp_path):
    ws = _ws(tmp_path, "drift:\n  alpah: 0.01\n")
    with pytest.raises(ConfigError) as ei:
        load_config(env={}, cwd=ws)
    assert ei.value.exit_code == 6
    assert str(ws / "llctl.yaml") in ei.value.message and "drift.alpah: unknown key" in ei.value.message


def test_bad_value_from_env_names_the_variable(tmp_path):
    ws = _ws(tmp_path, "")
    with pytest.raises(ConfigError) as ei:
        load_config(env={"LLCTL_DATA__MAX_BAD_FRACTION": "3"}, cwd=ws)
    assert "LLCTL_DATA__MAX_BAD_FRACTION" in ei.value.message and "data.max_bad_fraction" in ei.value.message


def test_invalid_yaml_gives_line_number(tmp_path):
    ws = _ws(tmp_path, "model: {name: a}\ndrift: [unclosed\n")
    with pytest.raises(ConfigError, match=r"llctl.yaml:\d+: not valid YAML"):
        load_config(env={}, cwd=ws)


def test_missing_workspace_is_a_config_error_with_init_hint(tmp_path):
    with pytest.raises(WorkspaceNotFoundError) as ei:
        load_config(env={}, cwd=tmp_path)
    assert ei.value.exit_code == 6 and "llctl init" in ei.value.hint


def test_relative_paths_resolve_against_the_config_directory(tmp_path):
    ws = _ws(tmp_path, "")
    cfg = load_config(env={}, cwd=ws)
    assert cfg.store_url == f"sqlite:///{ws}/.llctl/state.db"
    assert cfg.data_root == str(ws / ".llctl" / "data")


def test_masked_config_hides_passwords(tmp_path):
    ws = _ws(tmp_path, "store:\n  url: postgresql+psycopg://llctl:hunter2@db/llctl\n")
    shown = load_config(env={}, cwd=ws).masked()
    assert shown["store"]["url"] == "postgresql+psycopg://llctl:***@db/llctl"
    assert "hunter2" not in repr(shown)
