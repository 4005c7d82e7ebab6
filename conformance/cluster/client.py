"""The cluster as the checks see it: typed helpers over the official client's dynamic API."""

from __future__ import annotations

import copy
import json
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

from kubernetes import client, dynamic
from kubernetes.dynamic.exceptions import DynamicApiError, NotFoundError, ResourceNotFoundError

from conformance.cluster import meter, wait
from conformance.cluster.api_status import annotate, api_status
from conformance.cluster.labels import kaic_labels

FIELD_MANAGER = "kaic"
T = TypeVar("T")
Obj = dict[str, Any]
WEBHOOK_KINDS = ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")


@dataclass(frozen=True)
class ObjectRef:
    api_version: str
    kind: str
    name: str
    namespace: str | None = None

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> ObjectRef:
        meta = obj.get("metadata", {})
        return cls(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind}/{where}{self.name}"


@dataclass(frozen=True)
class ProxyTarget:
    """A pod or Service port the API server proxies to (`kind` is `pods` or `services`)."""

    kind: str
    namespace: str
    name: str
    port: int | str

    def __str__(self) -> str:
        kind = "Pod" if self.kind == "pods" else "Service"
        return f"{kind}/{self.namespace}/{self.name}:{self.port}"


@dataclass(frozen=True)
class HttpReply:
    status: int
    headers: dict[str, str]
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


def _calls(hook: Obj, url: str) -> bool:
    """Whether the API server calling `url` is calling this webhook."""
    cfg = hook.get("clientConfig") or {}
    service = cfg.get("service")
    if service:
        return url.startswith(f"https://{service.get('name')}.{service.get('namespace')}.svc")
    return str(cfg.get("url") or "").split("?")[0] == url


def _webhook_address(hook: Obj, configuration: str) -> str:
    cfg = hook.get("clientConfig") or {}
    service = cfg.get("service")
    if service:
        address = (f"Service {service.get('namespace')}/{service.get('name')}:"
                   f"{service.get('port') or 443}")  # fmt: skip
    else:
        address = str(cfg.get("url") or "an unknown address")
    return f"{address}, in {configuration}"


class _MeteredApiClient(client.ApiClient):
    """Every API request counted, and its round trip timed as time blocked on the cluster (the
    stream of a watch or log is timed by whoever reads it: wait_for, follow_log)."""

    def call_api(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        meter.request(watch="watch=true" in url.lower())
        with meter.blocked():
            return super().call_api(method, url, *args, **kwargs)


class Cluster:
    def __init__(
        self,
        configuration: client.Configuration,
        *,
        context: str,
        run_id: str,
        timeout_scale: float = 1.0,
    ) -> None:
        self.configuration = configuration
        self.api = _MeteredApiClient(configuration)
        self.context = context
        self.run_id = run_id
        self.timeout_scale = timeout_scale

    @property
    def server(self) -> str:
        return str(self.configuration.host)

    @cached_property
    def dynamic(self) -> dynamic.DynamicClient:
        # The client caches discovery in a file; a shared one (its default, per host name) can
        # claim an API exists on a new cluster that reuses the address. Keep ours private.
        self._discovery_dir = tempfile.TemporaryDirectory(prefix="kaic-discovery-")
        make: Any = dynamic.DynamicClient
        cache = str(Path(self._discovery_dir.name) / "discovery.json")
        return make(self.api, cache_file=cache)  # type: ignore[no-any-return]

    @cached_property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    def server_version(self, timeout: float | None = None) -> str:
        info = client.VersionApi(self.api).get_code(_request_timeout=timeout)
        return str(info.git_version)

    def get_path(self, path: str, *, timeout: float | None = None) -> Any:
        """GET a raw API path (e.g. /readyz, /apis); JSON is decoded, text returned as is."""
        request = self.api.param_serialize("GET", path, auth_settings=["BearerToken"])
        response: Any = self.api.call_api(*request, _request_timeout=timeout)
        response.read()
        if not 200 <= response.status <= 299:
            self.api.response_deserialize(response, {})  # raises ApiException with the body
        text = response.data.decode("utf-8", errors="replace")
        try:
            return json.loads(text)
        except ValueError:
            return text

    def proxy(
        self,
        method: str,
        target: ProxyTarget,
        path: str,
        *,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30,
    ) -> HttpReply:
        """An HTTP request to a pod or Service through the API server's proxy: how the suite
        reaches workloads from outside the cluster network. Any status is returned, not raised."""
        resource = (
            f"/api/v1/namespaces/{target.namespace}/{target.kind}/{target.name}:{target.port}"
        )
        header_params = {"Accept": "*/*", **(headers or {})}
        if body is not None:
            header_params.setdefault("Content-Type", "application/json")
        request = self.api.param_serialize(
            method, f"{resource}/proxy/{path.lstrip('/')}", header_params=header_params,
            body=body, auth_settings=["BearerToken"],
        )  # fmt: skip
        response: Any = self.api.call_api(*request, _request_timeout=timeout)
        response.read()
        return HttpReply(
            int(response.status),
            {k.lower(): v for k, v in (response.getheaders() or {}).items()},
            response.data.decode("utf-8", errors="replace"),
        )

    def resource(self, api_version: str, kind: str) -> Any:
        """The dynamic resource; raises ResourceNotFoundError if the server does not serve it."""
        return self.dynamic.resources.get(api_version=api_version, kind=kind)

    def serves(self, api_version: str, kind: str) -> bool:
        try:
            self.resource(api_version, kind)
        except ResourceNotFoundError:
            return False
        return True

    def apply(self, manifest: Mapping[str, Any], *, check_id: str | None = None) -> Obj:
        """Server-side apply `manifest`, adding kaic's labels; return the object as stored."""
        body = copy.deepcopy(dict(manifest))
        labels = body.setdefault("metadata", {}).setdefault("labels", {})
        labels.update(kaic_labels(self.run_id, check_id))
        res = self.resource(body["apiVersion"], body["kind"])
        namespace = body["metadata"].get("namespace") if res.namespaced else None
        ref = ObjectRef(body["apiVersion"], body["kind"], body["metadata"]["name"], namespace)
        with self.answering(f"create or update {ref}"):
            out = res.server_side_apply(
                body=body,
                name=ref.name,
                namespace=namespace,
                field_manager=FIELD_MANAGER,
                force_conflicts=True,
            )
        return dict(out.to_dict())

    def dry_run_create(self, manifest: Mapping[str, Any]) -> Obj:
        """Create with dryRun=All: admission (webhooks included) runs, nothing is stored."""
        body = copy.deepcopy(dict(manifest))
        res = self.resource(body["apiVersion"], body["kind"])
        namespace = body["metadata"].get("namespace") if res.namespaced else None
        with self.answering(f"create {body['kind']} {body['metadata'].get('name')} (dry run)"):
            out = res.create(body=body, namespace=namespace, dry_run="All")
        return dict(out.to_dict())

    def get(self, ref: ObjectRef) -> Obj | None:
        try:
            out = self.resource(ref.api_version, ref.kind).get(
                name=ref.name, namespace=ref.namespace
            )
        except NotFoundError:
            return None
        return dict(out.to_dict())

    def list_objects(
        self,
        api_version: str,
        kind: str,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[Obj]:
        out = self.resource(api_version, kind).get(
            namespace=namespace, label_selector=label_selector, field_selector=field_selector
        )
        return [dict(i) for i in out.to_dict().get("items") or []]

    def delete(self, ref: ObjectRef, *, background: bool = True) -> bool:
        """Delete one object; False if it was already gone."""
        policy = "Background" if background else "Foreground"
        try:
            with self.answering(f"delete {ref}"):
                self.resource(ref.api_version, ref.kind).delete(
                    name=ref.name, namespace=ref.namespace, body={"propagationPolicy": policy}
                )
        except NotFoundError:
            return False
        return True

    def label(self, ref: ObjectRef, labels: Mapping[str, str]) -> None:
        """Add labels to an existing object (JSON merge patch)."""
        with self.answering(f"label {ref}"):
            self.resource(ref.api_version, ref.kind).patch(
                body={"metadata": {"labels": dict(labels)}},
                name=ref.name,
                namespace=ref.namespace,
                content_type="application/merge-patch+json",
            )

    @contextmanager
    def answering(self, action: str) -> Iterator[None]:
        """On an API error, record on the exception what was being done and, when an admission
        webhook failed, where it is served (the outcome's message says both)."""
        try:
            yield
        except (client.ApiException, DynamicApiError) as exc:
            status = api_status(exc)
            where = ""
            if status is not None and status.webhook:
                where = self.webhook_served_by(status.webhook, status.webhook_url)
            annotate(exc, action, where)
            raise

    def webhook_served_by(self, webhook: str, called: str = "") -> str:
        """Where the admission webhook of that name sends its calls ("Service ns/name:port" or
        its URL, and its configuration); of several of that name (Kueue and LWS both register
        `mleaderworkerset.kb.io`), the one at the address the API server `called`. Empty when
        no configuration of it can be read."""
        found: list[tuple[Obj, str]] = []
        for kind in WEBHOOK_KINDS:
            try:
                configurations = self.list_objects("admissionregistration.k8s.io/v1", kind)
            except (client.ApiException, DynamicApiError):
                return ""
            for c in configurations:
                named = [h for h in c.get("webhooks") or [] if h.get("name") == webhook]
                found += [(hook, f"{kind} {c['metadata']['name']}") for hook in named]
        if not found:
            return ""
        hook, configuration = next(
            ((h, c) for h, c in found if called and _calls(h, called)), found[0]
        )
        return _webhook_address(hook, configuration)

    def pod_logs(self, name: str, namespace: str, container: str | None = None) -> str:
        kwargs: dict[str, Any] = {"container": container} if container else {}
        return str(self.core.read_namespaced_pod_log(name, namespace, **kwargs))

    def follow_log(
        self, name: str, namespace: str, container: str, *, timeout_s: float
    ) -> Iterator[str]:
        """Lines of a running container's log as they come (a stream, not polling)."""
        response: Any = self.core.read_namespaced_pod_log(
            name,
            namespace,
            container=container,
            follow=True,
            _preload_content=False,
            _request_timeout=(10, timeout_s * self.timeout_scale),
        )
        try:
            with meter.blocked():
                for raw in response:
                    yield raw.decode("utf-8", errors="replace").rstrip("\n")
        finally:
            response.release_conn()

    def wait_for(
        self,
        api_version: str,
        kind: str,
        condition: Callable[[list[Obj]], T | None],
        *,
        awaiting: str,
        timeout_s: float,
        namespace: str | None = None,
        name: str | None = None,
        label_selector: str | None = None,
        next_step: str = "",
    ) -> T:
        """Watch objects until `condition(current objects)` returns something truthy.

        Raises WaitTimeout (a check failure) naming what was awaited, the last state seen and
        where to look next (`next_step`, by default the kubectl describe of what was watched).
        `timeout_s` is multiplied by --timeout-scale.
        """
        resource = self.resource(api_version, kind)
        with meter.blocked():
            return wait.wait_for(
                resource,
                condition,
                awaiting=awaiting,
                timeout_s=timeout_s * self.timeout_scale,
                namespace=namespace,
                field_selector=f"metadata.name={name}" if name else None,
                label_selector=label_selector,
                next_step=next_step or _describe_step(kind, namespace, name, label_selector),
            )


def _describe_step(kind: str, namespace: str | None, name: str | None, selector: str | None) -> str:
    where = f" -n {namespace}" if namespace else ""
    which = f" {name}" if name else (f" -l {selector}" if selector else "")
    return (
        f"kubectl{where} describe {kind.lower()}{which} (its conditions and events), and the logs "
        "of the controller that should act on it"
    )
