"""The Kubernetes API as the MiniCluster executor uses it: a client (the given URL, else the
in-cluster configuration, else a kubeconfig), the preflight check of the API and the Flux
Operator's CRD, and a client error in a few words."""

from __future__ import annotations

import re

from harness.errors import HarnessError
from harness.run.executors.minicluster_render import CRD_NAME, VERSION


def api_client(api_url: str | None, kubeconfig: str | None):
    """A kubernetes ApiClient that does not retry (a refusal is an answer)."""
    try:
        from kubernetes import client as k8s
        from kubernetes import config
    except ImportError:
        raise HarnessError(
            "minicluster executor: the kubernetes Python client is missing (pip install kubernetes)"
        ) from None
    if api_url:
        conf = k8s.Configuration()
        conf.host = api_url
        conf.retries = 0
        return k8s.ApiClient(conf)
    try:
        config.load_incluster_config()
    except config.ConfigException:
        try:
            config.load_kube_config(config_file=kubeconfig)
        except (config.ConfigException, OSError) as exc:
            raise HarnessError(
                f"minicluster executor: no Kubernetes configuration ({exc})"
            ) from None
    api = k8s.ApiClient()
    api.configuration.retries = 0
    return api


def installed_crd(api) -> str:
    """The installed operator's CRD variant (head or 0.2.1); a HarnessError when the API or
    the operator is not there."""
    from kubernetes import client as k8s

    where = api.configuration.host
    try:
        k8s.VersionApi(api).get_code(_request_timeout=10)
    except Exception as exc:  # urllib3 / ApiException: the API refuses or is unreachable
        raise HarnessError(
            f"minicluster executor: the Kubernetes API at {where} is unreachable ({reason(exc)})"
        ) from None
    try:
        crd = k8s.ApiextensionsV1Api(api).read_custom_resource_definition(
            CRD_NAME, _request_timeout=10
        )
    except Exception as exc:
        if status(exc) == 404:
            raise HarnessError(
                f"minicluster executor: the Flux Operator is not installed at {where} "
                f"(no CRD {CRD_NAME})"
            ) from None
        raise HarnessError(
            f"minicluster executor: cannot read the CRD {CRD_NAME} at {where} ({reason(exc)})"
        ) from None
    return crd_variant(crd)


def status(exc: Exception) -> int | None:
    """The HTTP status of a kubernetes client error (None: no answer)."""
    return getattr(exc, "status", None)


def reason(exc: Exception) -> str:
    """One short reason of a kubernetes client / urllib3 failure."""
    code = status(exc)
    if code:
        return f"HTTP {code} {getattr(exc, 'reason', '') or ''}".strip()
    inner = getattr(exc, "reason", None)
    text = str(inner or exc)
    for pattern in (
        r"\[Errno \d+\] ([^'\"\)]+)",
        r"(Connection refused|timed out|Name or service "
        r"not known|certificate verify failed)",
    ):
        m = re.search(pattern, text)
        if m:
            return m.group(1).strip()
    return type(exc).__name__


def crd_variant(crd) -> str:
    """head or 0.2.1, from the installed CRD: 0.2.1's spec has no backoffLimit."""
    try:
        (version,) = [v for v in crd.spec.versions if v.name == VERSION]
        # `var_schema` in the pydantic models of kubernetes>=34, `schema` before
        validation = getattr(version, "var_schema", None) or version.schema
        spec = validation.open_apiv3_schema.properties["spec"]
        return "head" if "backoffLimit" in (spec.properties or {}) else "0.2.1"
    except (AttributeError, KeyError, ValueError, TypeError):
        return "0.2.1"  # without backoffLimit: valid for both
