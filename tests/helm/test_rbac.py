"""RBAC is exactly the least each part needs, and nothing else holds API access."""

from __future__ import annotations

from typing import Any

from chart_render import VALUE_SETS, by_kind, objects, one

AGENT_CLUSTER_RULES = [{"apiGroups": [""], "resources": ["nodes", "pods"], "verbs": ["get", "list", "watch"]}]
AGENT_WORKLOAD_RULES = [
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get", "list", "watch", "delete"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
]
BROKER_RULES = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["patch"]}]
RBAC_KINDS = ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")


def _normalised(
    rules: list[dict[str, Any]],
) -> list[tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]]:
    return sorted(
        (tuple(sorted(r["apiGroups"])), tuple(sorted(r["resources"])), tuple(sorted(r["verbs"])))
        for r in rules
    )


def _rbac(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] in RBAC_KINDS]


def test_agent_on_kubernetes_gets_exactly_the_least_set() -> None:
    objs = objects(VALUE_SETS["agent-only"])
    rbac = _rbac(objs)
    assert sorted((o["kind"], o["metadata"]["name"]) for o in rbac) == [
        ("ClusterRole", "fedbroker-fb-fedbroker-agent"),
        ("ClusterRoleBinding", "fedbroker-fb-fedbroker-agent"),
        ("Role", "fb-fedbroker-agent"),
        ("RoleBinding", "fb-fedbroker-agent"),
    ]
    cluster_role = one(objs, "ClusterRole", "fedbroker-fb-fedbroker-agent")
    assert _normalised(cluster_role["rules"]) == _normalised(AGENT_CLUSTER_RULES)
    assert "aggregationRule" not in cluster_role
    role = one(objs, "Role", "fb-fedbroker-agent")
    assert role["metadata"]["namespace"] == "gpu-jobs"  # the workload namespace, not the release's
    assert _normalised(role["rules"]) == _normalised(AGENT_WORKLOAD_RULES)

    subject = {"kind": "ServiceAccount", "name": "fb-fedbroker-agent", "namespace": "fedbroker"}
    binding = one(objs, "ClusterRoleBinding", "fedbroker-fb-fedbroker-agent")
    assert binding["subjects"] == [subject]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "fedbroker-fb-fedbroker-agent",
    }
    role_binding = one(objs, "RoleBinding", "fb-fedbroker-agent")
    assert role_binding["metadata"]["namespace"] == "gpu-jobs"
    assert role_binding["subjects"] == [subject]
    assert (
        role_binding["roleRef"]["kind"] == "Role" and role_binding["roleRef"]["name"] == "fb-fedbroker-agent"
    )

    (agent,) = by_kind(objs, "Deployment")
    spec = agent["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "fb-fedbroker-agent"
    assert spec["automountServiceAccountToken"] is True


def test_agents_without_the_kubernetes_backend_get_no_api_access() -> None:
    objs = objects(VALUE_SETS["agent-ray"])
    assert _rbac(objs) == []
    (agent,) = by_kind(objs, "Deployment")
    assert agent["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    (account,) = by_kind(objs, "ServiceAccount")
    assert account["automountServiceAccountToken"] is False


def test_rbac_off_makes_none_and_uses_the_named_account() -> None:
    values = VALUE_SETS["agent-only"]
    values = {
        "agent": {
            **values["agent"],
            "rbac": {"create": False},
            "serviceAccount": {"create": False, "name": "site-agent"},
        }
    }
    objs = objects(values)
    assert _rbac(objs) == [] and by_kind(objs, "ServiceAccount") == []
    (agent,) = by_kind(objs, "Deployment")
    assert agent["spec"]["template"]["spec"]["serviceAccountName"] == "site-agent"


def test_broker_may_only_patch_pods_in_its_namespace_from_its_label_container() -> None:
    objs = objects(VALUE_SETS["broker-only"])
    rbac = _rbac(objs)
    assert sorted(o["kind"] for o in rbac) == ["Role", "RoleBinding"]
    role = one(objs, "Role", "fb-fedbroker-broker")
    assert role["metadata"]["namespace"] == "fedbroker"
    assert _normalised(role["rules"]) == _normalised(BROKER_RULES)
    (broker,) = [d for d in by_kind(objs, "Deployment") if d["metadata"]["name"] == "fb-fedbroker-broker"]
    spec = broker["spec"]["template"]["spec"]
    assert spec["automountServiceAccountToken"] is False
    mounts = {c["name"]: {m["name"] for m in c.get("volumeMounts", [])} for c in spec["containers"]}
    assert [name for name, names in mounts.items() if "kube-api-access" in names] == ["role-label"]
    (job,) = by_kind(objs, "Job")
    assert job["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_no_rule_anywhere_uses_a_wildcard_or_escalates() -> None:
    for values in VALUE_SETS.values():
        for obj in _rbac(objects(values)):
            for rule in obj.get("rules", []):
                for field in ("apiGroups", "resources", "verbs"):
                    assert "*" not in rule[field], obj
                assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"]), obj
                assert not {"secrets", "roles", "clusterroles"} & set(rule["resources"]), obj
