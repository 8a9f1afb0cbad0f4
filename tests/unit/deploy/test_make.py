"""The Makefile, deploy/ensure-apt.sh and deploy/nginx/render.py, without starting servers."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from origin.settings import Settings
from tests.servers import load_nginx_render

ROOT = Path(__file__).resolve().parents[3]


def make_dry_run(target: str) -> list[str]:
    if not shutil.which("make"):
        pytest.fail("make not found: apt-get install -y make")
    proc = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.replace("\\\n", " ").splitlines()  # join continued lines


def test_make_test_runs_nginx_t_on_the_rendered_template_before_pytest() -> None:
    lines = make_dry_run("test")
    check = next(i for i, line in enumerate(lines) if "deploy/nginx/render.py" in line and "--check" in line)
    pytest_run = next(i for i, line in enumerate(lines) if "-m pytest" in line)
    assert check < pytest_run
    apt = [line for line in lines if "deploy/ensure-apt.sh" in line]
    assert any("nginx" in line and "redis-server" in line for line in apt), apt


def test_make_test_lints_every_package() -> None:
    """ruff and mypy run over every package before pytest (issue 16: `.ci/run` lints them)."""
    lint = " ".join(make_dry_run("lint"))
    for package in ("origin", "cache", "deploy", "ocr_core"):
        assert re.search(rf"ruff check [\w ]*\b{package}\b", lint), lint
    for package in ("origin", "cache", "ocr_core"):
        assert re.search(rf"mypy [\w ]*\b{package}\b", lint), lint
    assert any("lint" in line for line in (ROOT / "Makefile").read_text().splitlines()
               if line.startswith("test:"))


def test_ci_runs_make_test() -> None:
    script = (ROOT / ".ci/run").read_text()
    assert re.search(r"^make test\b", script, re.M)
    assert "set -euo pipefail" in script


def test_render_check_fails_on_an_invalid_config(tmp_path: Path) -> None:
    """`make test` stops when nginx -t rejects the config (render.py exits non-zero)."""
    render = load_nginx_render()
    out = tmp_path / "nginx.conf"
    ok = subprocess.run([sys.executable, str(ROOT / "deploy/nginx/render.py"), "--out", str(out),
                         "--log-dir", str(tmp_path / "log"), "--listen", "127.0.0.1:1", "--check"],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    out.write_text(out.read_text().replace("daemon off;", "daemon maybe;"))
    assert render.nginx_test(out).returncode != 0


def test_nginx_body_limit_default_is_the_origins() -> None:
    render = load_nginx_render()
    assert render.values_for(Path("/tmp/x"))["OCR_MAX_UPLOAD_BYTES"] == str(Settings.max_upload_bytes)
    values = render.values_for(Path("/tmp/x"), max_upload_bytes=12345)
    assert "client_max_body_size 12345;" in render.render(values)


def test_snippets_have_no_placeholders() -> None:
    """Snippets are included as they are (only the template is rendered, by render.py or by the
    nginx image's envsubst), so a `${OCR_...}` in a snippet would reach nginx unfilled."""
    render = load_nginx_render()
    for snippet in render.SNIPPETS.glob("*.conf"):
        assert not render.PLACEHOLDER.search(snippet.read_text()), snippet.name
    template = render.TEMPLATE.read_text()
    included = set(re.findall(r"include \$\{OCR_NGINX_SNIPPETS\}/(\S+);", template))
    assert included == {p.name for p in render.SNIPPETS.glob("*.conf")}


def test_ensure_apt_is_a_no_op_when_everything_is_there(tmp_path: Path) -> None:
    present = tmp_path / "present"
    present.write_text("")
    # A command on PATH, an existing file, and a bare package dpkg knows as installed.
    proc = subprocess.run([str(ROOT / "deploy/ensure-apt.sh"), "sh=never-installed-package",
                           f"{present}=never-installed-either", "coreutils"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


# Packages whose comments must cite only what the repository holds.
CITING_PACKAGES = ("origin", "cache", "deploy", "ocr_core", "bench")


def test_code_cites_documents_inside_the_repo() -> None:
    """Issue 16 'one source of truth': comments cited a notes file outside the repository; the
    facts they rely on are in docs/facts.md now, and every cited docs/ file exists."""
    outside = re.compile(r"NOTES §|shared/NOTES|/work/")
    cited = re.compile(r"docs/([\w.-]+\.md)")
    found, missing = [], []
    for package in CITING_PACKAGES:
        for path in sorted((ROOT / package).rglob("*")):
            if path.suffix not in (".py", ".conf", ".template", ".sh") or not path.is_file():
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if outside.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
                missing += [f"{path.relative_to(ROOT)}:{n}: docs/{m}" for m in cited.findall(line)
                            if not (ROOT / "docs" / m).exists()]
    assert not found, "\n".join(found)
    assert not missing, "\n".join(missing)
