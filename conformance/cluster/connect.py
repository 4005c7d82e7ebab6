"""Turn --kubeconfig/--context/--in-cluster into a configured client, or one clear error."""

from __future__ import annotations

import os
import ssl
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import urllib3
import yaml
from kubernetes import client, config
from kubernetes.config import incluster_config
from kubernetes.config.config_exception import ConfigException

from conformance.cluster.client import Cluster
from conformance.errors import KaicError

# Retried with exponential backoff: throttling, transient server errors, dropped connections.
RETRY_STATUSES = (429, 500, 502, 503, 504)
# An admission webhook that failed this many times in a row is the answer: it will not answer
# the next time within a check (each try may wait out the webhook's own timeout, 10 s by default).
WEBHOOK_ATTEMPTS = 2
PREFLIGHT_TIMEOUT_S = 10
SERVICEACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


@dataclass(frozen=True)
class ConnectOptions:
    kubeconfig: str | None = None
    context: str | None = None
    in_cluster: bool = False
    timeout_scale: float = 1.0


def default_kubeconfig() -> Path | None:
    """The kubeconfig kubectl would use ($KUBECONFIG's first file, else ~/.kube/config)."""
    env = os.environ.get("KUBECONFIG", "")
    candidates = [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    candidates.append(Path("~/.kube/config").expanduser())
    return next((p for p in candidates if p.is_file()), None)


def kubeconfig_configured(options: ConnectOptions) -> bool:
    """Whether the user pointed kaic at a cluster at all (else `kaic run` uses the sandbox)."""
    return bool(options.in_cluster or options.kubeconfig or default_kubeconfig())


class Retry(urllib3.Retry):
    """urllib3's Retry, except that a request an admission webhook failed is given up after
    WEBHOOK_ATTEMPTS tries (the API server's 500 is then returned as it is)."""

    def __init__(self, *args: Any, webhook_failures: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.webhook_failures = webhook_failures

    def new(self, **kw: Any) -> Retry:
        kw.setdefault("webhook_failures", self.webhook_failures)
        return super().new(**kw)

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: Any = None,
        error: Exception | None = None,
        _pool: Any = None,
        _stacktrace: TracebackType | None = None,
    ) -> Retry:
        failures = self.webhook_failures + (1 if webhook_failed(response) else 0)
        if failures >= WEBHOOK_ATTEMPTS:
            reason = urllib3.exceptions.ResponseError("an admission webhook failed")
            raise urllib3.exceptions.MaxRetryError(_pool, url or "", reason)
        found: Retry = super().increment(method, url, response, error, _pool, _stacktrace)
        found.webhook_failures = failures
        return found


def webhook_failed(response: Any) -> bool:
    """Whether a 500 says the API server could not call an admission webhook. Reading `data`
    keeps the (small) Status body in the response for whoever reads it next."""
    if getattr(response, "status", 0) != 500:
        return False
    body = response.data
    return isinstance(body, bytes) and b"failed calling webhook" in body


def retry_policy(backoff_factor: float = 0.5) -> urllib3.Retry:
    """6 retries, waiting backoff_factor * 2**n seconds (at most 8) or what Retry-After says;
    an admission webhook's failure only WEBHOOK_ATTEMPTS times in all."""
    return Retry(
        total=6,
        connect=3,
        read=3,
        backoff_factor=backoff_factor,
        backoff_max=8,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=None,
        respect_retry_after_header=True,
        raise_on_status=False,
    )


def load_configuration(options: ConnectOptions) -> tuple[client.Configuration, str]:
    """Load credentials; return the client configuration and a name for where they came from."""
    cfg = client.Configuration()
    if options.in_cluster:
        try:
            _load_incluster(cfg)
        except ConfigException as exc:
            raise KaicError(f"--in-cluster: not running inside a cluster ({exc})") from None
        source = "in-cluster"
    else:
        path = _kubeconfig_path(options.kubeconfig)
        context = _pick_context(path, options.context)
        try:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=str(path), context=context, client_configuration=cfg
            )
        except (ConfigException, ValueError, TypeError, KeyError, OSError) as exc:
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise KaicError(f"kubeconfig {path}: {detail}") from None
        source = context
    cfg.retries = retry_policy()
    if not cfg.verify_ssl:
        # The kubeconfig asks for it (insecure-skip-tls-verify); do not warn on every request.
        warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
    return cfg, source


def _load_incluster(cfg: client.Configuration) -> None:
    """The pod's service account; KAIC_SERVICEACCOUNT_DIR overrides where its files are."""
    directory = Path(os.environ.get("KAIC_SERVICEACCOUNT_DIR") or SERVICEACCOUNT_DIR)
    loader = incluster_config.InClusterConfigLoader(  # type: ignore[no-untyped-call]
        token_filename=str(directory / "token"), cert_filename=str(directory / "ca.crt")
    )
    loader.load_and_set(cfg)  # type: ignore[no-untyped-call]


def _kubeconfig_path(given: str | None) -> Path:
    if given:
        path = Path(given).expanduser()
        if not path.is_file():
            raise KaicError(f"kubeconfig {path} does not exist or is not a file")
        return path
    found = default_kubeconfig()
    if found is None:
        raise KaicError("no kubeconfig: pass --kubeconfig, set KUBECONFIG, or use --in-cluster")
    return found


def _pick_context(path: Path, wanted: str | None) -> str:
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise KaicError(f"kubeconfig {path}: cannot read it ({exc})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise KaicError(f"kubeconfig {path}: not valid YAML{where}") from None
    if not isinstance(data, dict) or not isinstance(data.get("contexts"), list):
        raise KaicError(f"kubeconfig {path}: not a kubeconfig (no 'contexts' list)")
    names = [c.get("name") for c in data["contexts"] if isinstance(c, dict)]
    if wanted:
        if wanted not in names:
            available = ", ".join(str(n) for n in names) or "none"
            raise KaicError(
                f"kubeconfig {path}: unknown context {wanted!r} (available: {available})"
            )
        return wanted
    current = data.get("current-context")
    if not current:
        if len(names) == 1:
            return str(names[0])
        raise KaicError(f"kubeconfig {path}: no current-context set; pass --context")
    if current not in names:
        raise KaicError(f"kubeconfig {path}: current-context {current!r} is not defined")
    return str(current)


def connect(options: ConnectOptions, run_id: str) -> Cluster:
    """Connect and make sure the server answers; every failure is a one-line KaicError."""
    cfg, source = load_configuration(options)
    cluster = Cluster(cfg, context=source, run_id=run_id, timeout_scale=options.timeout_scale)
    preflight(cluster)
    return cluster


def preflight(cluster: Cluster) -> None:
    try:
        cluster.server_version(timeout=PREFLIGHT_TIMEOUT_S)
    except client.ApiException as exc:
        if exc.status in (401, 403):
            raise KaicError(
                f"API server {cluster.server} rejected the credentials of {cluster.context!r} "
                f"({exc.status} {exc.reason})"
            ) from None
        raise KaicError(
            f"API server {cluster.server} answered {exc.status} {exc.reason} to GET /version"
        ) from None
    except urllib3.exceptions.MaxRetryError as exc:
        raise KaicError(
            f"cannot reach the API server at {cluster.server}: {describe_network_error(exc)}"
        ) from None
    except (urllib3.exceptions.HTTPError, OSError, ssl.SSLError) as exc:
        raise KaicError(
            f"cannot reach the API server at {cluster.server}: {describe_network_error(exc)}"
        ) from None


def describe_network_error(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    text = str(reason)
    for needle, plain in (
        ("Connection refused", "connection refused"),
        ("Name or service not known", "host name does not resolve"),
        ("CERTIFICATE_VERIFY_FAILED", "TLS certificate verification failed"),
        ("timed out", "timed out"),
    ):
        if needle in text:
            return plain
    return text.splitlines()[0] if text else type(reason).__name__
