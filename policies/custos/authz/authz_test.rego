package custos.authz_test

import data.custos.authz

# Inputs are built from one request by a workload in customers-readers;
# each test changes what it is about.
base := {
	"principal": {"issuer": "https://idp", "subject": "nightly-etl", "kind": "workload", "groups": ["g-1"], "group_names": ["customers-readers"], "roles": [], "groups_unknown": false},
	"connection": {"name": "customers", "kind": "http", "labels": {}},
	"request": {"method": "GET", "path": "/1"},
	"action": {"kind": "http", "risk": "read", "summary": "GET /1"},
	"grants": [],
}

with_risk(r) := object.union(base, {"action": {"kind": "http", "risk": r, "summary": sprintf("%s on /1", [r])}})

as_groups(gs) := object.union(base, {"principal": object.union(base.principal, {"groups": gs, "group_names": []})})

test_reader_reads if {
	d := authz.decision with input as base
	d.allow == true
	not d.approval
	contains(d.reasons[0], "read access to \"customers\" through customers-readers")
}

test_group_ids_map_too if {
	d := authz.decision with input as as_groups(["customers-readers"])
	d.allow
}

test_reader_cannot_write if {
	d := authz.decision with input as with_risk("write")
	d.allow == false
	contains(d.reasons[0], "has read access to \"customers\"; this write action (write on /1) needs write access")
}

test_writer_writes if {
	d := authz.decision with input as object.union(with_risk("write"), {"principal": object.union(base.principal, {"group_names": ["customers-writers"]})})
	d.allow
	not d.approval
}

test_unmapped_group_is_denied_with_the_groups_to_ask_for if {
	d := authz.decision with input as as_groups(["marketing"])
	d.allow == false
	d.reasons == ["workload \"nightly-etl\" is in no group with access to connection \"customers\"; ask for one of: customers-admins, customers-readers, customers-writers"]
}

test_no_groups_is_denied if {
	d := authz.decision with input as as_groups([])
	d.allow == false
}

test_unmapped_connection_is_denied if {
	d := authz.decision with input as object.union(base, {"connection": {"name": "ledger", "kind": "http", "labels": {}}})
	d.allow == false
	contains(d.reasons[0], "mapped to no group")
}

test_group_overage_is_not_no_groups if {
	d := authz.decision with input as object.union(as_groups([]), {"principal": object.union(base.principal, {"groups": [], "group_names": [], "groups_unknown": true})})
	d.allow == false
	contains(d.reasons[0], "group overage")
}

test_destructive_needs_one_approval_from_the_approvers if {
	d := authz.decision with input as object.union(with_risk("destructive"), {"principal": object.union(base.principal, {"group_names": ["customers-writers"]})})
	d.allow
	d.approval == {"rule": "destructive-needs-approval", "approvers": ["custos-approvers"], "min_approvals": 1, "scope": "request"}
}

test_destructive_needs_write_level_first if {
	d := authz.decision with input as with_risk("destructive")
	d.allow == false
	not d.approval
}

test_admin_needs_admin_level_and_two_approvals if {
	d := authz.decision with input as object.union(with_risk("admin"), {"principal": object.union(base.principal, {"group_names": ["customers-admins"]})})
	d.allow
	d.approval.min_approvals == 2
	d.approval.rule == "admin-needs-approval"
}

test_admin_action_by_a_writer_is_denied if {
	d := authz.decision with input as object.union(with_risk("admin"), {"principal": object.union(base.principal, {"group_names": ["customers-writers"]})})
	d.allow == false
}

test_unknown_risk_needs_approval if {
	d := authz.decision with input as with_risk("unknown")
	d.allow
	d.approval.rule == "unknown-needs-approval"
	d.approval.min_approvals == 1
}

test_a_risk_the_policy_does_not_know_is_denied if {
	d := authz.decision with input as with_risk("catastrophic")
	d.allow == false
}

test_workloads_never_read_kubernetes_secrets if {
	inp := object.union(base, {
		"connection": {"name": "customers", "kind": "kubernetes", "labels": {}},
		"action": {"kind": "kubernetes", "risk": "read", "summary": "get secret db-password", "kubernetes": {"verb": "get", "resource": "secrets"}},
	})
	d := authz.decision with input as inp
	d.allow == false
	contains(d.reasons[0], "workloads never read Kubernetes secrets")
}

test_humans_may_read_kubernetes_secrets_with_access if {
	inp := object.union(base, {
		"principal": object.union(base.principal, {"kind": "human"}),
		"action": {"kind": "kubernetes", "risk": "read", "summary": "get secret db-password", "kubernetes": {"verb": "get", "resource": "secrets"}},
	})
	d := authz.decision with input as inp
	d.allow
}

test_connection_approvers_override_the_default if {
	d := authz.decision with input as with_risk("unknown") with data.custos.config.approvers as {"default": ["a"], "customers": ["dba-oncall"]}
	d.approval.approvers == ["dba-oncall"]
}

test_masking_profile_of_the_connection if {
	d := authz.decision with input as base with data.custos.config.masking as {"customers": "pci"}
	d.mask_profile == "pci"
	denied := authz.decision with input as as_groups([]) with data.custos.config.masking as {"customers": "pci"}
	denied.mask_profile == "pci"
}

test_no_masking_key_without_a_profile if {
	d := authz.decision with input as base
	not d.mask_profile
}
