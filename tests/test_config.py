"""Typed YAML configs: unknown keys and wrong types are errors naming the key."""

from dataclasses import dataclass, field

import pytest

from tfface.config import from_dict, load_config, to_dict
from tfface.data.synthetic import FaceDataConfig
from tfface.errors import ConfigError


@dataclass(frozen=True)
class Inner:
    rate: float = 0.1
    sizes: tuple[int, ...] = (1, 2)


@dataclass(frozen=True)
class Outer:
    name: str = "x"
    inner: Inner = field(default_factory=Inner)
    extra: dict = field(default_factory=dict)
    path: str | None = None


def test_round_trip_and_types():
    cfg = from_dict(Outer, {"name": "a", "inner": {"rate": 1, "sizes": [3, 4]}, "extra": {"k": 1}})
    assert cfg.inner.rate == 1.0 and isinstance(cfg.inner.rate, float) and cfg.inner.sizes == (3, 4)
    assert from_dict(Outer, to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    "data,where",
    [
        ({"nmae": "a"}, "nmae"),
        ({"inner": {"rte": 1}}, "inner.rte"),
        ({"inner": {"rate": "fast"}}, "inner.rate"),
        ({"inner": {"sizes": [1, "b"]}}, r"inner.sizes\[1\]"),
        ({"inner": 3}, "inner"),
        ({"name": 5}, "name"),
    ],
)
def test_errors_name_the_key(data, where):
    with pytest.raises(ConfigError, match=where):
        from_dict(Outer, data)


def test_yaml_file_errors_name_the_file(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("num_identities: 4\nimage_sise: 64\n")
    with pytest.raises(ConfigError, match=r"r\.yaml.*image_sise"):
        load_config(FaceDataConfig, p)
    p.write_text("num_identities: 4\nnuisance: {yaw: [-60, 60]}\n")
    assert load_config(FaceDataConfig, p).nuisance.yaw == (-60.0, 60.0)
    with pytest.raises(ConfigError, match="not found"):
        load_config(FaceDataConfig, tmp_path / "none.yaml")
    p.write_text("!!python/object:os.system {}\n")
    with pytest.raises(ConfigError):  # safe_load refuses python tags
        load_config(FaceDataConfig, p)
