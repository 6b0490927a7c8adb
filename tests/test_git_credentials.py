"""Git credentials are bound to hosts: a real HTTP(S) server stands in for a git host and
records the headers git sends it (issue 9)."""

from __future__ import annotations

import base64
import shlex
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from meta_deployer import gitops
from meta_deployer.errors import CloneError, SettingsError
from meta_deployer.settings import GitAuth, Settings

TOKEN = "ghp_organisationtoken123"
BASIC = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()


class GitHost:
    """A fake git host on 127.0.0.1 that answers 404 and records every request's headers."""

    def __init__(self, tls_dir: Path | None = None):
        seen: list[dict[str, str]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                seen.append({k.lower(): v for k, v in self.headers.items()})
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_GET

            def log_message(self, *args: object) -> None:
                pass

        self.requests = seen
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.scheme = "http"
        if tls_dir is not None:
            cert, key = tls_dir / "cert.pem", tls_dir / "key.pem"
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                 "-keyout", str(key), "-out", str(cert)],
                check=True, capture_output=True,
            )
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert, key)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "team/x.git") -> str:
        return f"{self.scheme}://127.0.0.1:{self.server.server_address[1]}/{path}"

    def authorization_headers(self) -> list[str]:
        return [r["authorization"] for r in self.requests if "authorization" in r]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def http_host() -> Iterator[GitHost]:
    host = GitHost()
    yield host
    host.stop()


@pytest.fixture
def https_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GitHost]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make the test host's certificate")
    monkeypatch.setenv("GIT_SSL_NO_VERIFY", "1")  # the test host's certificate is self-signed
    host = GitHost(tmp_path)
    yield host
    host.stop()


def _try_git(host: GitHost, auth: GitAuth, dest: Path) -> str:
    """ls-remote and a clone against the host; both fail (404); return the error text."""
    messages = []
    with pytest.raises(CloneError) as info:
        gitops.remote_heads(host.url(), auth)
    messages.append(str(info.value))
    with pytest.raises(CloneError) as info:
        gitops.converge(host.url(), "main", dest, auth)
    messages.append(str(info.value))
    assert host.requests, "git never reached the test host"
    return "\n".join(messages)


def test_a_host_outside_the_list_never_receives_the_token(https_host, tmp_path):
    auth = GitAuth(token=TOKEN, token_hosts=("git.example.com",))
    errors = _try_git(https_host, auth, tmp_path / "c")
    assert https_host.authorization_headers() == []
    assert TOKEN not in errors and BASIC not in errors


def test_plain_http_never_receives_the_token_even_for_a_listed_host(http_host, tmp_path):
    auth = GitAuth(token=TOKEN, token_hosts=("127.0.0.1",))
    _try_git(http_host, auth, tmp_path / "c")
    assert http_host.authorization_headers() == []


def test_the_listed_https_host_receives_the_token(https_host, tmp_path):
    """The control for the two tests above: the same server does see a token it may receive."""
    auth = GitAuth(token=TOKEN, token_hosts=("127.0.0.1",))
    errors = _try_git(https_host, auth, tmp_path / "c")
    assert set(https_host.authorization_headers()) == {f"Basic {BASIC}"}
    assert TOKEN not in errors and BASIC not in errors


def test_the_token_is_per_host_configuration_of_the_listed_host_only():
    auth = GitAuth(token=TOKEN, token_hosts=("github.com", "git.example.com"))
    env = gitops.git_env("https://GitHub.com/acme/x.git", auth)
    assert env["GIT_CONFIG_COUNT"] == "1"
    assert env["GIT_CONFIG_KEY_0"] == "http.https://github.com/.extraHeader"
    assert env["GIT_CONFIG_VALUE_0"] == f"Authorization: Basic {BASIC}"
    assert gitops.git_env("https://git.example.com:8443/x.git", auth)["GIT_CONFIG_KEY_0"] == (
        "http.https://git.example.com:8443/.extraHeader"
    )
    for url in (
        "http://github.com/acme/x.git",  # plain http
        "https://github.com.evil.example/x.git",  # a lookalike host
        "https://evil.example/github.com/x.git",
        "ssh://git@github.com/acme/x.git",
        "git@github.com:acme/x.git",
        "file:///srv/x.git",
    ):
        env = gitops.git_env(url, auth)
        assert "GIT_CONFIG_COUNT" not in env and TOKEN not in str(env) and BASIC not in str(env), url
    # no hosts listed (the default): the token goes nowhere
    assert "GIT_CONFIG_COUNT" not in gitops.git_env("https://github.com/x.git", GitAuth(token=TOKEN))


def test_token_hosts_setting(tmp_path):
    settings = Settings.from_env({"META_DEPLOYER_ROOT": str(tmp_path), "META_DEPLOYER_GIT_TOKEN_HOSTS": " GitHub.com, git.example.com ,"})
    assert settings.git_token_hosts == ("github.com", "git.example.com")
    assert Settings.from_env({"META_DEPLOYER_ROOT": str(tmp_path)}).git_token_hosts == ()
    for bad in ("https://github.com", "github.com:443", "user@github.com", "github.com/acme"):
        with pytest.raises(SettingsError, match="META_DEPLOYER_GIT_TOKEN_HOSTS"):
            Settings.from_env({"META_DEPLOYER_ROOT": str(tmp_path), "META_DEPLOYER_GIT_TOKEN_HOSTS": bad})
    (tmp_path / "token").write_text(TOKEN + "\n")
    auth = Settings.from_env(
        {"META_DEPLOYER_ROOT": str(tmp_path), "META_DEPLOYER_GIT_TOKEN_FILE": "token", "META_DEPLOYER_GIT_TOKEN_HOSTS": "github.com"}
    ).git_auth()
    assert (auth.token, auth.token_hosts) == (TOKEN, ("github.com",))
    assert TOKEN not in repr(auth)


def test_ssh_deploy_key_uses_pinned_host_keys(tmp_path):
    key_dir = tmp_path / "keys dir"  # a space: the command must quote it
    settings = Settings.from_env({
        "META_DEPLOYER_ROOT": str(tmp_path),
        "META_DEPLOYER_GIT_SSH_KEY_FILE": "keys dir/deploy_key",
        "META_DEPLOYER_GIT_KNOWN_HOSTS_FILE": "keys dir/known_hosts",
    })
    env = gitops.git_env("git@github.com:acme/x.git", settings.git_auth())
    assert shlex.split(env["GIT_SSH_COMMAND"]) == [
        "ssh", "-o", "BatchMode=yes",
        "-i", str(key_dir / "deploy_key"), "-o", "IdentitiesOnly=yes",
        "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={key_dir / 'known_hosts'}",
    ]
    assert "GIT_SSH_COMMAND" not in gitops.git_env("git@github.com:acme/x.git", GitAuth())


def test_an_ssh_key_without_known_hosts_is_refused(tmp_path):
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"META_DEPLOYER_ROOT": str(tmp_path), "META_DEPLOYER_GIT_SSH_KEY_FILE": "deploy_key"})
    assert "META_DEPLOYER_GIT_SSH_KEY_FILE" in str(info.value) and "META_DEPLOYER_GIT_KNOWN_HOSTS_FILE" in str(info.value)
