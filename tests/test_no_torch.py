"""The runtime (engine, bridges, the CLI's harmonise path) must work without torch."""

import subprocess
import sys

BLOCK_TORCH = (
    "import sys\n"
    "class _NoTorch:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name == 'torch' or name.startswith('torch.'):\n"
    "            raise ImportError('torch is blocked in this test')\n"
    "sys.meta_path.insert(0, _NoTorch())\n"
)


def run_without_torch(code: str, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH + code], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)


def test_engine_and_bridges_import_without_torch(tmp_path):
    code = (
        "import pkgutil, importlib, kantor.engine, kantor.bridges\n"
        "for pkg in (kantor.engine, kantor.bridges):\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        importlib.import_module(m.name)\n"
        "assert 'torch' not in sys.modules\n"
        "print('ok')\n"
    )
    result = run_without_torch(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_harmonize_command_runs_without_torch(tmp_path):
    code = (
        "from kantor.bridges.cli import main\n"
        "code = main(['harmonize', '-o', 'out.mid', '--iterations', '5'])\n"
        "assert 'torch' not in sys.modules\n"
        "raise SystemExit(code)\n"
    )
    result = run_without_torch(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.mid").stat().st_size > 100
