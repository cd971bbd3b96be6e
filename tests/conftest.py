import os
import sys
from pathlib import Path

import pytest

# Triton kernels run in Triton's interpreter on machines without a GPU, so their logic is tested in CI.
# The flag is read when a kernel is decorated, so it is set before anything imports triton.
if not Path("/dev/nvidiactl").exists():
    os.environ.setdefault("TRITON_INTERPRET", "1")

PLUGINS = Path(__file__).parent / "plugins"
if str(PLUGINS) not in sys.path:
    sys.path.insert(0, str(PLUGINS))


@pytest.fixture
def write_suite(tmp_path):
    """Write a suite YAML into tmp_path and return its path."""

    def write(text: str, name: str = "suite.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic report site (tests/report_site.py) built once per test module."""
    from report_site import BUILD_TIME, DEVICES, METRIC_SPECS, WORKLOAD_INFO, make_manifests, make_records

    from reports import build_site

    out = tmp_path_factory.mktemp("site")
    index = build_site(make_records(), make_manifests(), out, METRIC_SPECS, WORKLOAD_INFO, BUILD_TIME,
                       devices=DEVICES)
    assert index == out / "index.html"
    return out
