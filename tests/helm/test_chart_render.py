"""The chart renders for every way a site deploys it, lints clean, and every object it renders is
valid Kubernetes: built-in kinds strictly against the API schemas (kubernetes-validate), the
Prometheus Operator's kinds against that operator's CRD models with no field left over."""

from __future__ import annotations

from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
from chart_render import CHART, VALUE_SETS, by_kind, objects, render
from cloudcoil.models.prometheus_operator import v1 as monitoring_v1

# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schemas known.
KUBE_VERSIONS = ("1.27.0", kubernetes_validate.utils.latest_version())
OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule"}


def _validate_operator_kind(obj: dict[str, Any]) -> None:
    model = getattr(monitoring_v1, obj["kind"]).model_validate(obj)
    # The models ignore unknown fields; a field they dropped is one the CRD does not have.
    assert model.model_dump(by_alias=True, exclude_unset=True, mode="json") == obj, obj["kind"]


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_object_is_valid_kubernetes(name: str) -> None:
    objs = objects(VALUE_SETS[name])
    assert objs
    for obj in objs:
        if obj["kind"] in OPERATOR_KINDS:
            assert obj["apiVersion"] == "monitoring.coreos.com/v1"
            _validate_operator_kind(obj)
            continue
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


def test_a_misspelt_field_in_an_object_is_caught() -> None:
    """The validation above would see a chart mistake: strict mode refuses unknown fields."""
    deployment = by_kind(objects(VALUE_SETS["both"]), "Deployment")[0]
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSIONS[0], strict=True)
    rule = by_kind(objects(VALUE_SETS["production"]), "PrometheusRule")[0]
    rule["spec"]["groupz"] = rule["spec"].pop("groups")
    with pytest.raises(AssertionError):
        _validate_operator_kind(rule)


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_lint_is_clean(name: str) -> None:
    report = helm.lint(CHART, VALUE_SETS[name], strict=True, namespace="fedbroker", kube_version="v1.27.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2]  # warnings and errors
    assert not report["errors"] and not problems, report


def test_lint_of_the_default_values_is_clean() -> None:
    report = helm.lint(CHART, strict=True)
    assert not report["errors"] and not [m for m in report["messages"] if m["severity"] >= 2], report


def _kinds(values: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (o["kind"], o["metadata"]["labels"]["app.kubernetes.io/component"])
        for o in objects(values)
        if "app.kubernetes.io/component" in o["metadata"].get("labels", {})
    }


def test_roles_are_selected_by_values() -> None:
    broker = _kinds(VALUE_SETS["broker-only"])
    agent = _kinds(VALUE_SETS["agent-only"])
    both = _kinds(VALUE_SETS["both"])
    assert {component for _, component in broker} == {"broker", "db-upgrade"}
    assert {component for _, component in agent} == {"agent"}
    assert both == broker | agent
    assert ("Deployment", "broker") in broker and ("Deployment", "agent") in agent


def test_nothing_enabled_renders_no_object_and_says_so() -> None:
    rendered = render({})
    assert objects({}) == []
    assert "Nothing was deployed" in rendered["fedbroker/templates/NOTES.txt"]


def test_notes_tell_how_to_reach_the_broker_and_check_the_agents() -> None:
    notes = render(VALUE_SETS["both"])["fedbroker/templates/NOTES.txt"]
    assert "fb-fedbroker-broker.fedbroker.svc:50051" in notes
    assert "fedbroker sites" in notes
    assert "connected to broker" in notes  # the agent's log line on a Welcome
    assert "kubectl create namespace gpu-jobs" in notes
    assert "WARNING: broker.tls.enabled is false" in notes
    assert "WARNING" not in render(VALUE_SETS["production"])["fedbroker/templates/NOTES.txt"]


def test_monitoring_objects_carry_the_repository_dashboard_and_rules() -> None:
    import json

    import yaml
    from chart_render import ROOT

    objs = objects(VALUE_SETS["production"])
    dashboards = [o for o in by_kind(objs, "ConfigMap") if o["metadata"]["name"].endswith("-dashboards")]
    assert len(dashboards) == 1
    assert dashboards[0]["metadata"]["namespace"] == "monitoring"
    assert dashboards[0]["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads((ROOT / "helm/fedbroker/dashboards/fedbroker.json").read_text())
    assert json.loads(dashboards[0]["data"]["fedbroker.json"]) == shipped
    (rule,) = by_kind(objs, "PrometheusRule")
    rules = yaml.safe_load((ROOT / "helm/fedbroker/alerts/fedbroker.rules.yaml").read_text())
    assert rule["spec"] == rules  # Prometheus's {{ $labels }} templates left as they are
    monitors = by_kind(objs, "ServiceMonitor")
    assert sorted(m["metadata"]["name"] for m in monitors) == ["fb-fedbroker-agent", "fb-fedbroker-broker"]
    for monitor in monitors:
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert not [o for o in objects(VALUE_SETS["both"]) if o["kind"] in OPERATOR_KINDS]
